"""The checkpoint and run commands against the local service (C1), in a subprocess like a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tinker_actors as tinker
from tinker_actors.local import LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService() as svc:
        yield svc


def cli(service: LocalService, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINKER_BASE_URL": service.base_url, "TINKER_API_KEY": service.api_key,
           "TINKER_TELEMETRY": "0"}
    result = subprocess.run([sys.executable, "-m", "tinker_actors.cli", *args], capture_output=True, text=True,
                            env=env, timeout=60)
    assert (result.returncode == 0) is ok, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def test_checkpoint_and_run_commands(service: LocalService, tmp_path: Path) -> None:
    saved = as_json(cli(service, "checkpoint", "save", "--base-model", "tiny-byte", "--rank", "2", "-f", "json"))
    sampler_path = saved["weights_path"]
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        weights_path = training.save_state("cli-w").result(30).path

    listed = as_json(cli(service, "checkpoint", "list", "--limit", "0", "-f", "json"))
    assert {sampler_path, weights_path} <= {c["tinker_path"] for c in listed["checkpoints"]}
    info = as_json(cli(service, "checkpoint", "info", weights_path, "-f", "json"))
    assert info["base_model"] == "tiny-byte" and info["lora_rank"] == 2 and info["is_lora"] is True
    cli(service, "checkpoint", "publish", weights_path)
    assert as_json(cli(service, "checkpoint", "info", weights_path, "-f", "json"))["public"] is True
    cli(service, "checkpoint", "unpublish", weights_path)
    cli(service, "checkpoint", "set-ttl", weights_path, "--ttl", "3600")
    assert as_json(cli(service, "checkpoint", "info", weights_path, "-f", "json"))["expires_at"] is not None
    cli(service, "checkpoint", "set-ttl", weights_path, "--remove")

    downloaded = as_json(cli(service, "checkpoint", "download", weights_path, "-o", str(tmp_path), "-f", "json"))
    assert any(Path(downloaded["destination"]).iterdir()) and downloaded["file_size_bytes"] > 0
    cli(service, "checkpoint", "download", weights_path, "-o", str(tmp_path), ok=False)  # exists, no --force

    runs = as_json(cli(service, "run", "list", "-f", "json"))
    run_id = saved["model_id"]
    assert run_id in {r["training_run_id"] for r in runs["runs"]}
    assert as_json(cli(service, "run", "info", run_id, "-f", "json"))["lora_rank"] == 2
    samples = as_json(cli(service, "run", "sample", "--model-path", sampler_path, "--prompt", "[104, 105]",
                          "--max-tokens", "3", "-f", "json"))
    assert len(samples[0]["tokens"]) == 3
    table = cli(service, "run", "list").stdout
    assert table.splitlines()[0].startswith("training_run_id")

    deleted = as_json(cli(service, "checkpoint", "delete", weights_path, "-y", "-f", "json"))
    assert deleted["deleted_count"] == 1 and deleted["failed"] == [] and deleted["deleted"] == [weights_path]


def test_delete_of_several_exits_1_names_the_failed_one_and_deletes_the_others(service: LocalService) -> None:
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        first, second = (training.save_state(name).result(30).path for name in ("del-a", "del-b"))
        rest = svc.create_rest_client()
        missing = f"tinker://{training.model_id}/weights/never-saved"
        result = cli(service, "checkpoint", "delete", first, missing, second, "-y", "-f", "json", ok=False)
        assert result.returncode == 1
        report = as_json(result)
        assert report["deleted_count"] == 2 and report["deleted"] == [first, second]
        assert [f["tinker_path"] for f in report["failed"]] == [missing] and "not found" in report["failed"][0]["error"]
        errors = result.stderr.splitlines()
        assert len(errors) == 1 and errors[0].startswith(f"Error: {missing}: ")
        assert "Traceback" not in result.stderr
        left = {c.tinker_path for c in rest.list_checkpoints(training.model_id).result(30).checkpoints}
        assert first not in left and second not in left


def test_errors_are_one_line_and_exit_1(service: LocalService) -> None:
    result = cli(service, "checkpoint", "info", "not-a-tinker-path", ok=False)
    assert result.returncode == 1 and result.stderr.startswith("Error: Invalid tinker path")
    assert "Traceback" not in result.stderr


def test_version_json() -> None:
    result = subprocess.run([sys.executable, "-m", "tinker_actors.cli", "version", "-f", "json"],
                            capture_output=True, text=True, timeout=30)
    assert json.loads(result.stdout)["version"] == tinker.__version__
