"""The REST and CLI features of 0.38 (R2, C2) as the official tinker==0.38.0 SDK and CLI use them, against the
local service; and the same journey on tinker-actors by changing the import, and the same CLI commands on the
tinker-actors command.

``journey_rest.py`` trains a little, saves, and then uses a session-less ``RestClient()``: models, whoami, runs
by project and access scope, a TTL, copy_weights (sampled from), ``ServiceClient.copy_weights``, the audit log,
the session's trace, an external weights checkpoint's file URLs, a deletion. Each run gets a service of its own
whose data directory already holds an external weights checkpoint (written as a save writes one), with token
exchange on (0.38's ``whoami`` reads the exchanged token).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tinker_actors
from tests.compat038.conftest import (
    HERE,
    RUN_TIMEOUT_S,
    ScriptRun,
    official_env,
    official_exit_ok,
    official_python,
    run_official,
    run_ours,
)
from tests.wire.conftest import OFFICIAL_038_PYTHON
from tinker_actors.local import LocalService
from tinker_actors.local.engine.storage import Storage

JOURNEY = "journey_rest.py"
FLAGS = {"pjwt_auth_enabled": True}
FILES = {"adapter_config.json": b'{"r": 2}', "adapter_model.safetensors": bytes(range(200)) * 10}


@dataclass
class Prepared:
    service: LocalService
    run_id: str  # a run of the service's user, made before the journey
    external: str  # tinker path of its external weights checkpoint


@contextmanager
def prepared_service(data_dir: Path) -> Iterator[Prepared]:
    """A service (token exchange on) whose data directory holds a run with an external weights checkpoint."""
    with LocalService(data_dir=data_dir) as first, tinker_actors.ServiceClient(
            base_url=first.base_url, api_key=first.api_key) as client:
        made = client.create_lora_training_client("tiny-byte", rank=2)
        training = made.result(60) if hasattr(made, "result") else made
        run_id = training.model_id
        training.save_state("w").result(60)
    storage = Storage(data_dir)
    storage.load()
    external = storage.write_external_weights(run_id, "final", FILES).tinker_path
    with LocalService(data_dir=data_dir, long_poll_s=5.0, protocol_flags=FLAGS) as service:
        yield Prepared(service, run_id, external)


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> ScriptRun:
    official_python()
    with prepared_service(tmp_path_factory.mktemp("rest-official-data")) as prepared:
        return run_official(JOURNEY, prepared.service, tmp_path_factory.mktemp("rest-official"), "tinker",
                            prepared.external)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> ScriptRun:
    with prepared_service(tmp_path_factory.mktemp("rest-ours-data")) as prepared:
        return run_ours(JOURNEY, prepared.service, tmp_path_factory.mktemp("rest-ours"), prepared.external,
                        protocol=None)


def _check_journey(run: ScriptRun) -> None:
    failed = run.failed_steps()
    assert not failed, "\n".join(f"--- {name}\n{error}" for name, error in failed.items())
    values = run.values
    assert values["models"] == [["tiny-bpe", 512, True, True], ["tiny-byte", 512, True, True]]
    assert values["whoami"] == {"user_urn": "default", "org_urn": "tml:organization:local",
                                "email": "default@localhost"}
    assert values["runs_in_project"] == [True] and values["runs_elsewhere"] == 0 and values["run"] == 2
    assert values["ttl_minutes"] == 60
    copy = values["copy_weights"]
    assert (copy["kind"], copy["expires"], copy["same_tokens"], copy["in_archive"]) == ("sampler_weights", True,
                                                                                           True, 1)
    assert values["service_copy"] == ["weights", "meta"] and values["runs_in_project_after_copy"] == 2
    assert {"checkpoint_create", "checkpoint_copy", "checkpoint_ttl_set", "checkpoint_read"} <= set(
        values["audit_events"])
    assert {"create_session", "create_model", "forward_backward", "optim_step", "save_weights",
            "save_weights_for_sampler", "asample"} <= set(values["trace"]["endpoints"])
    assert values["trace"]["timed"] is True
    assert values["external_files"] == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert values["delete_copy"] is True


def test_the_official_sdk_runs_the_rest_journey(official: ScriptRun) -> None:
    _check_journey(official)
    # 0.38's save_state keeps a TTL and metadata with the checkpoint
    assert official.values["save_state"]["kwargs"] == "taken"
    assert official.values["saved_metadata"] == {"user_metadata": {"stage": "journey"}, "expires": True}


def test_tinker_actors_runs_the_same_journey(ours: ScriptRun, official: ScriptRun) -> None:
    _check_journey(ours)
    for name in ("models", "whoami", "runs_in_project", "run", "ttl_minutes", "service_copy", "external_files"):
        assert ours.values[name] == official.values[name], name


# ---- the command lines -----------------------------------------------------------------------------------

def _run_cli(command: list[str], service: LocalService, home: Path, cwd: Path) -> Any:
    done = subprocess.run(command, env={**official_env(service, home), "PYTHONPATH": str(HERE.parents[1])},
                          cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert official_exit_ok(done) if command[0].endswith("/tinker") else done.returncode == 0, \
        f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None


CLIS = {"official": lambda: [str(OFFICIAL_038_PYTHON.parent / "tinker")],
        "ours": lambda: [sys.executable, "-m", "tinker_actors.cli"]}


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_the_cli_journey(cli: str, tmp_path: Path) -> None:
    official_python()
    base = CLIS[cli]()
    with prepared_service(tmp_path / "data") as prepared:
        service = prepared.service

        def run(*args: str) -> Any:
            return _run_cli([*base, "-f", "json", *args], service, tmp_path / "home", tmp_path)

        with tinker_actors.ServiceClient(base_url=service.base_url, api_key=service.api_key) as client:
            made = client.create_lora_training_client("tiny-byte", rank=2)
            training = made.result(60) if hasattr(made, "result") else made
            old = [training.save_state(f"old-{i}").result(60).path for i in range(3)]
            time.sleep(0.05)
            cut = datetime.now(UTC)
            time.sleep(0.05)
            new = [training.save_state(f"new-{i}").result(60).path for i in range(2)]
            sampler = training.save_weights_for_sampler("s").result(60).path
            session_id = training.model_id.rsplit(":train:", 1)[0]

        models = run("model", "list")["models"]
        assert [m["model_name"] for m in models] == ["tiny-byte", "tiny-bpe"]
        assert all(m["max_context_length"] == 512 and m["trainable"] and m["sampleable"] for m in models)
        assert [m["model_name"] for m in run("model", "list", "BPE")["models"]] == ["tiny-bpe"]

        listed = run("checkpoint", "list", "--run-id", training.model_id)
        assert listed["run_id"] == training.model_id
        assert {c["tinker_path"] for c in listed["checkpoints"]} == {*old, *new, sampler}
        assert {"expires_at", "user_metadata", "size_bytes"} <= set(listed["checkpoints"][0])

        run("checkpoint", "set-ttl", new[0], "--ttl", "3600")
        info = run("checkpoint", "info", new[0])
        assert info["expires_at"] is not None and info["is_lora"] is True and info["lora_rank"] == 2

        deleted = run("checkpoint", "delete", "--run-id", training.model_id, "--type", "weights",
                      "--before", cut.isoformat().replace("+00:00", "Z"), "-y")
        assert deleted["deleted_count"] == 3 and deleted["failed"] == []
        left = {c["tinker_path"] for c in run("checkpoint", "list", "--run-id", training.model_id)["checkpoints"]}
        assert left == {*new, sampler}

        trace_file = tmp_path / "trace.pftrace"
        exported = run("session", "export-trace", session_id, "-o", str(trace_file))
        assert exported["session_id"] == session_id and exported["file_size_bytes"] == trace_file.stat().st_size
        trace = json.loads(trace_file.read_text())
        assert {"create_model", "save_weights"} <= {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
        assert run("session", "export-trace", session_id, "--url-only")["url"].startswith(service.base_url)

        downloaded = run("checkpoint", "download", prepared.external, "-o", str(tmp_path / "out"))
        target = Path(downloaded["destination"])
        assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == FILES
        assert downloaded["file_size_bytes"] == sum(len(data) for data in FILES.values())

        if cli == "official":  # 0.38 downloads a training checkpoint through a temporary external weights export
            exported = run("checkpoint", "download", new[1], "-o", str(tmp_path / "peft"))
            files = {p.name for p in Path(exported["destination"]).rglob("*") if p.is_file()}
            assert {"adapter_config.json", "adapter_model.safetensors"} <= files

        runs = run("run", "list")["runs"]
        assert {prepared.run_id, training.model_id} <= {r["training_run_id"] for r in runs}
