"""External weights checkpoints (``tinker://<run>/external_weights/<name>``) and their file URLs (0.38's
``get_external_weights_urls``, what ``tinker checkpoint download`` uses since 0.38), against the local service.

The local service stores external weights as files (``Storage.write_external_weights``); they are written here
into the data directory between two runs of the service, as a save would write them, then read over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import tinker_actors as tinker
from tests.rest.conftest import KEYS, WAIT_S, done, make_service, service_client, training_client
from tinker_actors.local import LocalService
from tinker_actors.local.engine.storage import Storage

FILES = {"adapter_config.json": b'{"r": 2, "lora_alpha": 32}', "adapter_model.safetensors": bytes(range(256)) * 40,
         "extra/notes.txt": b"exported by a test"}


@dataclass
class World:
    svc: LocalService
    run_id: str
    external: str  # tinker path
    weights: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    data_dir = tmp_path / "data"
    with make_service(data_dir) as first, service_client(first) as alice:
        training = training_client(alice)
        weights = training.save_state("w").result(WAIT_S).path
        run_id = training.model_id
    storage = Storage(data_dir)
    storage.load()
    external = storage.write_external_weights(run_id, "final", FILES, user_metadata={"format": "peft"}).tinker_path
    with make_service(data_dir, archive_lifetime_s=30.0) as svc:
        yield World(svc, run_id, external, weights)


def test_urls_serve_each_file_without_a_key(world: World) -> None:
    with service_client(world.svc) as alice:
        rest = alice.create_rest_client()
        listed = {c.tinker_path: c for c in rest.list_checkpoints(world.run_id).result(WAIT_S).checkpoints}
        checkpoint = listed[world.external]
        assert checkpoint.checkpoint_type == "external" and checkpoint.user_metadata == {"format": "peft"}
        assert checkpoint.size_bytes == sum(len(data) for data in FILES.values())
        answer = rest.get_external_weights_urls(world.external).result(WAIT_S)
        assert set(answer.urls) == set(FILES)
        for name, url in answer.urls.items():
            assert url.startswith(world.svc.base_url + "/local/v1/external_weights/")
            assert httpx.get(url, timeout=30).content == FILES[name]  # no X-API-Key
        assert 20 <= (answer.expires - datetime.now(UTC)).total_seconds() <= 30  # archive_lifetime_s
        not_external = httpx.get(f"{world.svc.base_url}/api/v1/training_runs/{world.run_id}/checkpoints/weights/w/"
                                 "external_weights_urls", headers={"X-API-Key": KEYS["alice"]}, timeout=30)
        assert not_external.status_code == 400 and "not external weights" in not_external.json()["error"]
        with pytest.raises(tinker.TinkerError, match="external weights"):  # files for outside use only
            done(alice.create_training_client_from_state(world.external))
        with pytest.raises(tinker.TinkerError, match="external weights"):
            done(alice.create_sampling_client(model_path=world.external))
        rest.delete_checkpoint_from_tinker_path(world.external).result(WAIT_S)
        assert httpx.get(answer.urls["adapter_config.json"], timeout=30).status_code == 404  # gone with it


def test_only_the_owner_until_published(world: World) -> None:
    with service_client(world.svc, "bob") as bob, service_client(world.svc) as alice:
        bob_rest = bob.create_rest_client()
        with pytest.raises(tinker.NotFoundError):
            bob_rest.get_external_weights_urls(world.external).result(WAIT_S)
        alice.create_rest_client().publish_checkpoint_from_tinker_path(world.external).result(WAIT_S)
        urls = bob_rest.get_external_weights_urls(world.external).result(WAIT_S).urls
        assert httpx.get(urls["extra/notes.txt"], timeout=30).content == FILES["extra/notes.txt"]
        reads = [e for e in alice.create_rest_client().get_audit_log().result(WAIT_S).entries
                 if e.event == "checkpoint_read"]
        assert [(e.event_details["actor"], e.event_details["owner"], e.purpose) for e in reads] == [
            ("bob", "alice", "external_weights_urls")]


def test_an_unknown_or_expired_link_is_404(world: World) -> None:
    assert httpx.get(f"{world.svc.base_url}/local/v1/external_weights/not-a-token", timeout=30).status_code == 404


def test_cli_downloads_external_weights(world: World, tmp_path: Path) -> None:
    env = {**os.environ, "TINKER_BASE_URL": world.svc.base_url, "TINKER_API_KEY": KEYS["alice"],
           "TINKER_TELEMETRY": "0"}
    result = subprocess.run([sys.executable, "-m", "tinker_actors.cli", "-f", "json", "checkpoint", "download",
                           world.external, "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    target = Path(report["destination"])
    assert {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()} == FILES
    assert report["file_size_bytes"] == sum(len(data) for data in FILES.values())
