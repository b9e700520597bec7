"""The official tinker==0.38.0 SDK runs a user's whole loop unchanged against the local service.

``official_loop.py`` (run with the official 0.38 interpreter) creates a LoRA model, trains it with
forward_backward + optim_step, runs forward, saves and loads state, saves weights for a sampler,
samples (sequence ids, prompt logprobs), computes logprobs, lists and deletes checkpoints through
the REST client and the official CLI, and closes its session. It runs twice, each time against a
service of its own: with the service's defaults (uncompressed protobuf, results in one poll), and
with the service asking for zstd-compressed requests of at most two datums and announcing every
result by its size first (``complete_metadata``). The service records what arrived
(``svc.wire_log``), so the tests also check what went on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat038.conftest import (
    ScriptRun,
    official_python,
    run_official,
    run_official_cli,
    service_with_flags,
)
from tinker_actors.local.server.wire_log import WireRecord

TEXT_LEN = len(b"the quick brown fox jumps over the lazy dog. ") - 1
PROMPT_LEN = len(b"the ")
BATCH = 4  # datums per training step (official_loop.py)
STEPS = 6


class _Outcome:
    """One run of the official loop against its own service: the summary and what the service received."""

    def __init__(self, run: ScriptRun, records: list[WireRecord], cli_runs: Any) -> None:
        self.run = run
        self.records = records
        self.cli_runs = cli_runs

    def requests(self, method: str, path: str) -> list[WireRecord]:
        return [r for r in self.records if r.method == method and r.path == path]


def _run_loop(home: Path, flags: dict[str, Any], *, console: bool = False,
              **service_options: Any) -> Iterator[_Outcome]:
    official_python()  # skip before starting anything when the 0.38 SDK is not installed
    with service_with_flags(flags, **service_options) as service:
        with service.wire_log.capture() as capture:
            run = run_official("official_loop.py", service, home)
        # the console command in its own process (once is enough: the loop ran the CLI in-process too)
        cli_runs = run_official_cli(service, home, "run", "list") if console else None
        yield _Outcome(run, capture.snapshot(), cli_runs)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    """The service's defaults: ``client/config`` answers ``{}`` (every flag at the SDK's default)."""
    yield from _run_loop(tmp_path_factory.mktemp("official038-plain"), {}, console=True)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    """zstd-compressed requests of at most two datums; every result announced by its size first."""
    yield from _run_loop(tmp_path_factory.mktemp("official038-zstd"),
                         {"proto_compress_fwdbwd": True, "fwdbwd_max_chunk_len": 2}, inline_result_bytes=0)


@pytest.fixture(params=["plain", "compressed"])
def outcome(request: pytest.FixtureRequest) -> _Outcome:
    result: _Outcome = request.getfixturevalue(request.param)
    return result


def _assert_steps_pass(outcome: _Outcome) -> None:
    failed = outcome.run.failed_steps()
    assert not failed, "steps of the official 0.38 loop failed:\n" + "\n".join(
        f"--- {name}\n{error}" for name, error in failed.items())


def _assert_loss_falls(losses: list[float]) -> None:
    assert losses and all(isinstance(loss, float) for loss in losses), losses
    assert losses[-1] < losses[0] * 0.8, f"the loss did not go down: {losses}"


# ---- the loop: the same outcome with either service configuration -------------------------------

def test_every_step_of_the_loop_passes(outcome: _Outcome) -> None:
    _assert_steps_pass(outcome)
    assert outcome.run.values["tinker_version"] == "0.38.0"


def test_training_loss_goes_down(outcome: _Outcome) -> None:
    values = outcome.run.values
    _assert_loss_falls(values["losses"])
    assert len(values["losses"]) == STEPS
    assert values["fwdbwd_outputs"] == BATCH and values["fwdbwd_logprobs_len"] == TEXT_LEN  # chunks joined
    assert values["info"]["lora_rank"] == 8 and values["info"]["model_name"] == "tiny-byte"
    assert set(values["forward"]["keys"]) >= {"logprobs", "elementwise_loss"}
    assert values["forward"]["logprobs_len"] == TEXT_LEN
    restored = values["from_state"]
    assert restored["rank"] == 8
    assert restored["loss_restored"] == pytest.approx(restored["loss_here"], rel=1e-5)


def test_sampling_sequence_ids_and_logprobs(outcome: _Outcome) -> None:
    values = outcome.run.values
    assert values["sampler_base_model"] == "tiny-byte"
    sample = values["sample"]
    assert len(sample["tokens"]) == 3 and all(len(t) == 6 for t in sample["tokens"])
    assert sample["tokens"][0] == sample["tokens"][1] == sample["tokens"][2]  # greedy
    assert sample["logprobs_len"] == [6, 6, 6] and sample["stop_reasons"] == ["length"] * 3
    ids = sample["sequence_ids"] + values["prompt_logprobs"]["sequence_ids"]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids), ids
    stopped = values["sample_stop"]
    assert stopped["stop_reasons"] == ["stop", "stop"] and stopped["tokens"][0] == stopped["expected"]
    prompt = values["prompt_logprobs"]
    assert len(prompt["prompt_logprobs"]) == PROMPT_LEN and prompt["prompt_logprobs"][0] is None
    assert prompt["topk_widths"][1:] == [2] * (PROMPT_LEN - 1)
    assert values["compute_logprobs"][0] is None
    assert values["compute_logprobs"][1:] == pytest.approx(prompt["prompt_logprobs"][1:], abs=1e-5)
    assert values["ephemeral_tokens"] == sample["tokens"][0]  # same weights as the named sampler save
    assert values["base_sampler_sequences"] == 2


def test_rest_listing_deletion_and_cli(outcome: _Outcome) -> None:
    values = outcome.run.values
    run_id = values["info"]["model_id"]
    state, sampler = values["state_path"], values["sampler_path"]
    assert state == f"tinker://{run_id}/weights/c38-state"
    assert sampler == f"tinker://{run_id}/sampler_weights/c38-sampler"
    assert "tiny-byte" in values["models"]
    assert run_id in values["runs"]["run_ids"]
    assert (values["runs"]["base_model"], values["runs"]["lora_rank"]) == ("tiny-byte", 8)
    assert values["runs"]["user_metadata"] == {"exp": "compat038"}
    assert values["by_path"] == {"run_id": run_id, "base_model": "tiny-byte", "lora_rank": 8}
    assert {state, sampler} <= set(values["checkpoints_before"])
    assert {state, sampler} <= set(values["user_checkpoints"])
    assert values["deleted"] == state and state not in values["checkpoints_after"]
    assert sampler in values["checkpoints_after"]
    assert values["sessions"] == {"count": 1, "has_runs": True}
    # the official CLI, in the loop's process
    assert values["cli_run_info"]["training_run_id"] == run_id
    assert sampler in str(values["cli_checkpoints"])
    assert sampler not in str(values["cli_checkpoints_after"])


def test_the_console_command_lists_the_run(plain: _Outcome) -> None:
    """``tinker -f json run list``, the official console entry point in its own process."""
    run_ids = [run["training_run_id"] for run in plain.cli_runs["runs"]]
    assert plain.run.values["info"]["model_id"] in run_ids


def _unexpected_warnings(outcome: _Outcome) -> list[str]:
    """What the SDK logged at WARNING or worse, but for its deprecation notice of load_state*(),
    which the loop calls on purpose (the SDK still supports it and the service serves it)."""
    return [line for line in outcome.run.summary["warnings"]
            if "DEPRECATED: TrainingClient.load_state*()" not in line]


def test_no_warnings_from_the_sdk(outcome: _Outcome) -> None:
    assert _unexpected_warnings(outcome) == []


def test_every_endpoint_it_called_is_served(outcome: _Outcome) -> None:
    """Opened with client/config, closed with sessions/{id}/finish; no 404, no error answer."""
    assert outcome.requests("POST", "/api/v1/client/config")
    assert any(r.path.endswith("/finish") and r.status == 200 for r in outcome.records)
    failed = sorted({(r.method, r.path, r.status) for r in outcome.records
                     if r.status is None or r.status >= 400})
    assert failed == [], f"requests of the official SDK that failed: {failed}"


# ---- what went on the wire -----------------------------------------------------------------------

def _training_chunks(outcome: _Outcome) -> list[int]:
    """Datums per fwd/bwd request (not forward-only)."""
    return [len(r.decoded().get("data", [])) for r in outcome.requests("POST", "/api/v1/forward_backward")
            if not r.decoded().get("forward_only")]


def test_plain_wire_is_uncompressed_protobuf_in_one_poll(plain: _Outcome) -> None:
    """fwd/bwd and forward go as protobuf to /forward_backward (forward with forward_only, never
    /forward); results are asked for as protobuf and come in the first poll."""
    fwdbwd = plain.requests("POST", "/api/v1/forward_backward")
    for record in fwdbwd:
        assert record.content_type == "application/x-protobuf" and "content-encoding" not in record.headers
    assert any(r.decoded().get("forward_only") for r in fwdbwd)
    assert plain.requests("POST", "/api/v1/forward") == []
    assert _training_chunks(plain)[:STEPS] == [BATCH] * STEPS  # a step is one request
    polls = plain.requests("POST", "/api/v1/retrieve_future")
    assert {r.headers.get("accept") for r in polls} == {"application/json", "application/x-protobuf"}
    assert all(r.decoded()["allow_metadata_only"] is True for r in polls)


def test_compressed_wire_is_zstd_chunked_and_announced_first(compressed: _Outcome) -> None:
    """zstd requests of at most two datums (a step of four is two requests); every result first
    announced by its size, then fetched by a poll that does not allow metadata only."""
    fwdbwd = compressed.requests("POST", "/api/v1/forward_backward")
    for record in fwdbwd:
        assert record.headers.get("content-encoding") == "zstd", record.headers
    assert _training_chunks(compressed)[:2 * STEPS] == [2] * (2 * STEPS)
    polls = [r.decoded() for r in compressed.requests("POST", "/api/v1/retrieve_future")]
    announced = {p["request_id"] for p in polls if p["allow_metadata_only"]}
    fetched = {p["request_id"] for p in polls if not p["allow_metadata_only"]}
    assert announced and announced == fetched
