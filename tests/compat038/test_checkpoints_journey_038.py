"""Checkpoint saves and loads of 0.38 (T11) as the official tinker==0.38.0 SDK uses them, against the local
service (``journey_checkpoints.py``), and the same journey on tinker-actors by changing the import: the same
outcomes, and the same ``/load_weights`` body for ``create_training_client_from_state`` (one call, no
create_model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat038.conftest import (
    ScriptRun,
    official_python,
    run_official,
    run_ours,
    service_with_flags,
)
from tests.compat038.test_wire_capture import wire_requests
from tinker_actors.local.server.wire_log import WireRecord

JOURNEY = "journey_checkpoints.py"
Outcome = tuple[ScriptRun, list[WireRecord]]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    official_python()
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_official(JOURNEY, service, tmp_path_factory.mktemp("ckpt-official"))
    yield run, capture.snapshot()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    with service_with_flags({}) as service, service.wire_log.capture() as capture:
        run = run_ours(JOURNEY, service, tmp_path_factory.mktemp("ckpt-ours"))
    yield run, capture.snapshot()


def _failed(run: ScriptRun) -> dict[str, str]:
    return {name: error for name, error in run.summary["steps"].items() if error != "ok"}


def _loads(records: list[WireRecord]) -> list[dict[str, Any]]:
    return [r for r in wire_requests(records) if r["path"] in ("/api/v1/load_weights", "/api/v1/create_model")]


def test_the_official_sdk_saves_and_loads_as_0_38_says(official: Outcome) -> None:
    run, records = official
    assert not _failed(run), _failed(run)
    values = run.summary["values"]
    assert values["listed"] == {"state": {"user_metadata": {"stage": "two"}, "expires": False},
                                "sampler": {"user_metadata": {"use": "eval"}, "expires": True}}
    assert values["save_same_name"]["refused"] == "RequestFailedError"
    assert "already exists" in values["save_same_name"]["message"]
    assert values["same_logprobs"] is True
    assert values["from_state_other_base"]["refused"] == "BadRequestError"
    assert values["external_path_kind"] == "external_weights"
    assert values["external_files"] == ["adapter_config.json", "adapter_model.safetensors"]
    sent = _loads(records)
    # one create_model for the first model; from_state is one load that creates the second (no create_model)
    assert [r["path"] for r in sent if r["status"] == 200] == ["/api/v1/create_model", "/api/v1/load_weights"]


def test_the_same_journey_runs_on_tinker_actors_with_the_same_requests(ours: Outcome, official: Outcome) -> None:
    run, records = ours
    assert not _failed(run), _failed(run)
    mine, theirs = run.summary["values"], official[0].summary["values"]
    assert mine["listed"] == theirs["listed"] and mine["same_logprobs"] is True
    assert mine["external_files"] == theirs["external_files"]
    assert "already exists" in mine["save_same_name"]["message"]
    assert "not compatible" in mine["from_state_other_base"]["message"]
    assert [(r["path"], r["body"], r["status"]) for r in _loads(records)] == \
        [(r["path"], r["body"], r["status"]) for r in _loads(official[1])]
