"""The official tinker==0.38.0 SDK runs a user's whole loop unchanged against the local service.

``official_loop.py`` (run with the official 0.38 interpreter) creates a LoRA model, trains it with
forward_backward + optim_step, runs forward, saves and loads state, saves weights for a sampler,
samples (sequence ids, prompt logprobs), computes logprobs, lists and deletes checkpoints through
the REST client and the official CLI, and closes its session. It runs twice: as the service
answers by default (uncompressed protobuf), and with the service asking for zstd-compressed
requests in chunks of two datums. The service records what arrived (``svc.wire_log``), so the
tests also check what went on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compat038.conftest import ScriptRun, official_python, run_official, service_with_flags
from tinker_actors.local import LocalService
from tinker_actors.local.server.wire_log import WireRecord

TEXT_LEN = len(b"the quick brown fox jumps over the lazy dog. ") - 1
PROMPT_LEN = len(b"the ")


class _Outcome:
    """One run of the official loop against its own service: the summary and what the service received."""

    def __init__(self, run: ScriptRun, records: list[WireRecord], service: LocalService) -> None:
        self.run = run
        self.records = records
        self.endpoint_counts = service.request_counts()["endpoints"]

    def requests(self, method: str, path: str) -> list[WireRecord]:
        return [r for r in self.records if r.method == method and r.path == path]


def _run_loop(tmp: Path, mode: str, **flags: Any) -> Iterator[_Outcome]:
    official_python()  # skip before starting anything when the 0.38 SDK is not installed
    with service_with_flags(**flags) as service, service.wire_log.capture() as capture:
        run = run_official("official_loop.py", service, tmp, mode)
        yield _Outcome(run, capture.snapshot(), service)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    """The whole loop with the service's defaults (``client/config`` answers every flag at its default)."""
    yield from _run_loop(tmp_path_factory.mktemp("official038-plain"), "full")


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Outcome]:
    """Training only, with the service asking for zstd-compressed requests of at most two datums."""
    yield from _run_loop(tmp_path_factory.mktemp("official038-zstd"), "train",
                         proto_compress_fwdbwd=True, fwdbwd_max_chunk_len=2)


def _assert_steps_pass(outcome: _Outcome) -> None:
    failed = outcome.run.failed_steps()
    assert not failed, "steps of the official 0.38 loop failed:\n" + "\n".join(
        f"--- {name}\n{error}" for name, error in failed.items())


def _assert_loss_falls(losses: list[float]) -> None:
    assert losses and all(isinstance(loss, float) for loss in losses), losses
    assert losses[-1] < losses[0] * 0.8, f"the loss did not go down: {losses}"


# ---- the whole loop, service defaults ------------------------------------------------------------

def test_every_step_of_the_loop_passes(plain: _Outcome) -> None:
    _assert_steps_pass(plain)
    assert plain.run.values["tinker_version"] == "0.38.0"
    assert plain.run.seconds < 60, f"the official loop took {plain.run.seconds:.1f} s"


def test_training_loss_goes_down(plain: _Outcome) -> None:
    values = plain.run.values
    _assert_loss_falls(values["losses"])
    assert values["fwdbwd_outputs"] == 2 and values["fwdbwd_logprobs_len"] == TEXT_LEN
    assert values["info"]["lora_rank"] == 8 and values["info"]["model_name"] == "tiny-byte"
    assert set(values["forward"]["keys"]) >= {"logprobs", "elementwise_loss"}
    assert values["forward"]["logprobs_len"] == TEXT_LEN
    restored = values["from_state"]
    assert restored["rank"] == 8
    assert restored["loss_restored"] == pytest.approx(restored["loss_here"], rel=1e-5)


def test_sampling_sequence_ids_and_logprobs(plain: _Outcome) -> None:
    values = plain.run.values
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


def test_rest_listing_deletion_and_cli(plain: _Outcome) -> None:
    values = plain.run.values
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
    assert values["sessions"]["count"] >= 1
    assert values["cli_run_info"]["training_run_id"] == run_id
    assert sampler in str(values["cli_checkpoints"])
    assert sampler not in str(values["cli_checkpoints_after"])


def _unexpected_warnings(outcome: _Outcome) -> list[str]:
    """What the SDK logged at WARNING or worse, but for its deprecation notice of load_state*(),
    which the loop calls on purpose (the SDK still supports it and the service serves it)."""
    return [line for line in outcome.run.summary["warnings"]
            if "DEPRECATED: TrainingClient.load_state*()" not in line]


def test_no_warnings_from_the_sdk(plain: _Outcome) -> None:
    assert _unexpected_warnings(plain) == []


def test_what_went_on_the_wire(plain: _Outcome) -> None:
    """fwd/bwd and forward went as uncompressed protobuf to /forward_backward (never /forward);
    their results and the samples were asked for as protobuf; the session was opened with
    client/config and closed with sessions/{id}/finish."""
    fwdbwd = plain.requests("POST", "/api/v1/forward_backward")
    assert len(fwdbwd) >= 6 + 1  # six training steps and a forward, at least
    for record in fwdbwd:
        assert record.content_type == "application/x-protobuf" and "content-encoding" not in record.headers
        assert record.status == 200
    forward_only = [r for r in fwdbwd if r.decoded().get("forward_only")]
    assert forward_only, "forward went out as forward_backward with forward_only"
    assert plain.requests("POST", "/api/v1/forward") == []
    polls = plain.requests("POST", "/api/v1/retrieve_future")
    assert any(r.headers.get("accept") == "application/x-protobuf" for r in polls)
    assert plain.requests("POST", "/api/v1/client/config")
    assert any(r.path.endswith("/finish") and r.status == 200 for r in plain.records)
    unserved = sorted({(r.method, r.path) for r in plain.records if r.status == 404})
    assert unserved == [], f"the official SDK called endpoints the service does not serve: {unserved}"


# ---- compressed and chunked ----------------------------------------------------------------------

def test_compressed_chunked_training_loss_goes_down(compressed: _Outcome) -> None:
    _assert_steps_pass(compressed)
    _assert_loss_falls(compressed.run.values["losses"])
    assert compressed.run.values["fwdbwd_outputs"] == 4  # the chunks' outputs put back together
    assert _unexpected_warnings(compressed) == []


def test_compressed_requests_are_zstd_and_chunked(compressed: _Outcome) -> None:
    fwdbwd = compressed.requests("POST", "/api/v1/forward_backward")
    assert fwdbwd
    for record in fwdbwd:
        assert record.headers.get("content-encoding") == "zstd", record.headers
        assert record.status == 200
    sizes = [len(r.decoded().get("data", [])) for r in fwdbwd]
    assert max(sizes) <= 2, sizes
    # four training steps of four datums: two chunks each; then a forward of one datum
    assert len(fwdbwd) == 4 * 2 + 1, sizes

