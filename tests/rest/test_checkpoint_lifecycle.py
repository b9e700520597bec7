"""Checkpoints over their life in the local service (FEATURES R2): metadata and expiry kept from the save, a TTL
that passes deletes the checkpoint (listings, loads and disk), bulk deletion by type and date among hundreds of
checkpoints (RestClient and CLI), bounded in flight, and every change in the audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tinker_actors as tinker
from tests.local.support import Api
from tests.rest.conftest import KEYS, WAIT_S, done, make_service, service_client, training_client
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper


def _save_with_metadata(svc: LocalService, model_id: str, name: str, **added: object) -> str:
    """A 0.38 ``save_weights`` body (ttl_seconds, user_metadata), sent as the official SDK sends it."""
    api = Api(svc, KEYS["alice"])
    try:
        answer = api.post("/api/v1/save_weights", {"model_id": model_id, "path": name, **added})
        assert answer.status_code == 200, answer.text
        path: str = api.result(answer.json()["request_id"])["path"]
        return path
    finally:
        api.close()


def test_metadata_and_expiry_come_from_the_save(svc: LocalService, alice: tinker.ServiceClient) -> None:
    training = training_client(alice)
    path = _save_with_metadata(svc, training.model_id, "tagged", ttl_seconds=3600,
                               user_metadata={"step": "40", "note": "best"})
    rest = alice.create_rest_client()
    (checkpoint,) = rest.list_checkpoints(training.model_id).result(WAIT_S).checkpoints
    assert checkpoint.tinker_path == path and checkpoint.user_metadata == {"step": "40", "note": "best"}
    assert checkpoint.expires_at is not None
    assert 3590 <= (checkpoint.expires_at - checkpoint.time).total_seconds() <= 3600
    rest.set_checkpoint_ttl_from_tinker_path(path, None).result(WAIT_S)  # kept, metadata too
    (kept,) = rest.list_user_checkpoints().result(WAIT_S).checkpoints
    assert kept.expires_at is None and kept.user_metadata == {"step": "40", "note": "best"}


def test_a_passed_ttl_deletes_the_checkpoint(svc: LocalService, alice: tinker.ServiceClient) -> None:
    training = training_client(alice)
    doomed = training.save_state("doomed").result(WAIT_S).path
    kept = training.save_state("kept").result(WAIT_S).path
    rest = alice.create_rest_client()
    rest.set_checkpoint_ttl_from_tinker_path(doomed, 1).result(WAIT_S)
    files = list((svc.data_dir / "runs").glob("*/weights/doomed/v*/arrays.npz"))
    assert len(files) == 1
    listed = {c.tinker_path: c for c in rest.list_checkpoints(training.model_id).result(WAIT_S).checkpoints}
    assert listed[doomed].expires_at is not None and listed[kept].expires_at is None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and files[0].exists():  # the service's housekeeping runs every second
        time.sleep(0.1)
    assert not files[0].exists() and not files[0].parent.parent.exists()
    assert [c.tinker_path for c in rest.list_checkpoints(training.model_id).result(WAIT_S).checkpoints] == [kept]
    with pytest.raises(tinker.TinkerError, match="not found"):
        done(alice.create_training_client_from_state(doomed))
    expired = [e for e in rest.get_audit_log("checkpoints").result(WAIT_S).entries if e.event == "checkpoint_expire"]
    assert [(e.tinker_path, e.event_details["actor"]) for e in expired] == [(doomed, "system")]


@pytest.fixture
def fast_svc(tmp_path: Path) -> Iterator[LocalService]:
    """Zero-work models (tiny arrays): hundreds of checkpoints in a second or two."""
    with make_service(tmp_path / "fast", zero_work=True) as service:
        yield service


def _many(training: tinker.TrainingClient, prefix: str, count: int, *, sampler: bool = False) -> list[str]:
    save = training.save_weights_for_sampler if sampler else training.save_state
    futures = [save(f"{prefix}-{i:03d}") for i in range(count)]  # pipelined: one seq id each
    return [future.result(WAIT_S).path for future in futures]


def _cli(svc: LocalService, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINKER_BASE_URL": svc.base_url, "TINKER_API_KEY": KEYS["alice"], "TINKER_TELEMETRY": "0"}
    return subprocess.run([sys.executable, "-m", "tinker_actors.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_bulk_delete_by_type_and_dates(fast_svc: LocalService) -> None:
    with service_client(fast_svc) as alice:
        training = training_client(alice)
        old = _many(training, "old", 100)
        time.sleep(0.05)
        cut = datetime.now(UTC)
        time.sleep(0.05)
        new = _many(training, "new", 80)
        samplers = _many(training, "smp", 20, sampler=True)
        rest = alice.create_rest_client()
        assert len(rest.list_checkpoints(training.model_id).result(WAIT_S).checkpoints) == 200

        started = time.monotonic()
        deleted = _cli(fast_svc, "-f", "json", "checkpoint", "delete", "--run-id", training.model_id,
                       "--type", "weights", "--before", cut.isoformat(), "-y")
        seconds = time.monotonic() - started
        assert deleted.returncode == 0, deleted.stderr
        report = json.loads(deleted.stdout)
        assert report["deleted_count"] == 100 and report["failed"] == [] and sorted(report["deleted"]) == sorted(old)
        assert report["freed_bytes"] > 0
        assert seconds < 60  # a subprocess and 100 deletions, on a loaded machine
        left = {c.tinker_path for c in rest.list_checkpoints(training.model_id).result(WAIT_S).checkpoints}
        assert left == set(new) | set(samplers)
        assert not list((fast_svc.data_dir / "runs").glob("*/weights/old-*"))

        # the same selection through the API: sampler weights after the cut, across all runs
        chosen = [c.tinker_path for c in rest.list_user_checkpoints(limit=1000).result(WAIT_S).checkpoints
                  if c.checkpoint_type == "sampler" and c.time > cut]
        assert sorted(chosen) == sorted(samplers)
        report_api = rest.delete_checkpoints(chosen, max_in_flight=8).result(WAIT_S)
        assert sorted(report_api.deleted) == sorted(samplers) and report_api.failed == {}
        assert {c.tinker_path for c in rest.list_user_checkpoints(limit=1000).result(WAIT_S).checkpoints} == set(new)

        nothing = _cli(fast_svc, "-f", "json", "checkpoint", "delete", "--all-runs", "--type", "sampler_weights", "-y")
        assert json.loads(nothing.stdout)["deleted_count"] == 0
        deletes = [e for e in rest.get_audit_log().result(WAIT_S).entries if e.event == "checkpoint_delete"]
        assert len(deletes) == 120 and {e.event_details["actor"] for e in deletes} == {"alice"}


def test_bulk_deletion_keeps_a_bounded_number_in_flight(fast_svc: LocalService) -> None:
    with service_client(fast_svc) as alice:
        paths = _many(training_client(alice), "slow", 24)
        FaultHelper(fast_svc).delay("delete_checkpoint", 0.25)  # every deletion takes a quarter second
        started = time.monotonic()
        report = alice.create_rest_client().delete_checkpoints(paths, max_in_flight=4).result(WAIT_S)
        seconds = time.monotonic() - started
    assert len(report.deleted) == 24
    assert seconds >= 24 / 4 * 0.25 * 0.95  # never more than 4 at once
    assert seconds < 24 * 0.25 * 0.8  # but several at once: clearly faster than one by one


def test_cli_delete_argument_rules(fast_svc: LocalService) -> None:
    for args, message in ((("--type", "weights"), "--run-id"), (("tinker://r/weights/a", "--run-id", "r"), "not both"),
                          (("--run-id", "r", "--all-runs"), "not both"), ((), "give checkpoint paths"),
                          (("--run-id", "r", "--type", "bogus", "-y"), "invalid checkpoint type"),
                          (("--run-id", "r", "--before", "last tuesday", "-y"), "invalid date")):
        result = _cli(fast_svc, "checkpoint", "delete", *args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
