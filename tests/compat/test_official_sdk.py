"""The official tinker==0.6.3 SDK runs a full loop against the local service, without warnings."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.compat.conftest import sdk_warnings
from tinker_actors.local import LocalService

tinker = pytest.importorskip("tinker", reason="the official tinker SDK (compat extra) is not installed")
types = tinker.types

pytestmark = pytest.mark.compat

TEXT = list(b"the quick brown fox jumps over the lazy dog. ")


def _datum(tokens: list[int], **extra: list[float]) -> Any:
    inputs: dict[str, Any] = {"target_tokens": tokens[1:], **extra}
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


def _client(svc: LocalService) -> Any:
    return tinker.ServiceClient(base_url=svc.base_url, api_key=svc.api_key)


def test_training_loop_loss_falls_and_every_pass_kind_works(
        sdk_env: LocalService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    svc = sdk_env
    sc = _client(svc)
    names = [m.model_name for m in sc.get_server_capabilities().supported_models]
    assert "tiny-byte" in names
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=8, user_metadata={"exp": "compat"})
    info = tc.get_info()
    assert (info.model_id, info.lora_rank, info.model_data.model_name) == (tc.model_id, 8, "tiny-byte")
    assert ":train:" in tc.model_id

    datum = _datum(TEXT, weights=[1.0] * (len(TEXT) - 1))
    losses = []
    for _ in range(6):
        # Pipelined: optim_step is submitted before the forward_backward result is read.
        fwdbwd = tc.forward_backward([datum, datum], "cross_entropy")
        optim = tc.optim_step(types.AdamParams(learning_rate=5e-3))
        out = fwdbwd.result(timeout=30)
        optim.result(timeout=30)
        assert len(out.loss_fn_outputs) == 2
        assert len(out.loss_fn_outputs[0]["logprobs"].data) == len(TEXT) - 1
        losses.append(out.metrics["loss:sum"])
    assert losses[-1] < losses[0] * 0.8, losses

    forward = tc.forward([datum], "cross_entropy").result(timeout=30)
    assert set(forward.loss_fn_outputs[0]) >= {"logprobs", "elementwise_loss"}

    n = len(TEXT) - 1
    ppo = _datum(TEXT, logprobs=[-1.0] * n, advantages=[1.0] * n)
    result = tc.forward_backward([ppo], "ppo", {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2})
    assert "loss:sum" in result.result(timeout=30).metrics

    def custom_loss(data: list[Any], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        loss = sum((lp ** 2).sum() for lp in logprobs)
        return loss, {"custom_loss": float(loss.detach())}

    custom = tc.forward_backward_custom([datum], custom_loss).result(timeout=30)
    assert custom.metrics["custom_loss"] > 0
    tc.optim_step(types.AdamParams(learning_rate=1e-3)).result(timeout=30)

    counts = svc.request_counts()["endpoints"]
    assert counts["optim_step"]["executed"] >= 7
    assert sdk_warnings(caplog.records) == []


def test_checkpoints_samplers_and_state_round_trips(
        sdk_env: LocalService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sc = _client(sdk_env)
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=4)
    datum = _datum(TEXT)
    for _ in range(3):
        tc.forward_backward([datum], "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=1e-2))
    state_path = tc.save_state("compat-state").result(timeout=30).path
    assert state_path == f"tinker://{tc.model_id}/weights/compat-state"
    sampler_path = tc.save_weights_for_sampler("compat-sampler").result(timeout=30).path
    assert sampler_path == f"tinker://{tc.model_id}/sampler_weights/compat-sampler"

    sampler = sc.create_sampling_client(model_path=sampler_path)
    prompt = types.ModelInput.from_ints(list(b"the "))
    greedy = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=6, temperature=0.0)).result(timeout=30)
    tokens = greedy.sequences[0].tokens
    assert len(tokens) == 6 and len(greedy.sequences[0].logprobs or []) == 6
    assert greedy.sequences[0].stop_reason == "length"

    stop_token = tokens[2]
    first = tokens.index(stop_token)
    stopped = sampler.sample(prompt, 2, types.SamplingParams(
        max_tokens=6, temperature=0.0, stop=[stop_token])).result(timeout=30)
    assert [s.stop_reason for s in stopped.sequences] == ["stop", "stop"]
    assert stopped.sequences[0].tokens == tokens[:first + 1]
    stop_text = bytes([stop_token]).decode("latin-1")
    by_string = sampler.sample(prompt, 1, types.SamplingParams(
        max_tokens=6, temperature=0.0, stop=[stop_text])).result(timeout=30)
    assert by_string.sequences[0].stop_reason == "stop"

    with_lp = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True,
                             topk_prompt_logprobs=2).result(timeout=30)
    assert with_lp.prompt_logprobs is not None and with_lp.prompt_logprobs[0] is None
    assert len(with_lp.prompt_logprobs) == 4
    assert with_lp.topk_prompt_logprobs is not None and len(with_lp.topk_prompt_logprobs[1]) == 2
    logprobs = sampler.compute_logprobs(prompt).result(timeout=30)
    assert logprobs[1:] == pytest.approx(with_lp.prompt_logprobs[1:])

    ephemeral = tc.save_weights_and_get_sampling_client()
    eph = ephemeral.sample(prompt, 1, types.SamplingParams(max_tokens=6, temperature=0.0)).result(timeout=30)
    assert eph.sequences[0].tokens == tokens  # same weights as the named sampler save
    base = sc.create_sampling_client(base_model="tiny-byte")
    assert len(base.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result(timeout=30).sequences) == 1

    # Load with and without optimizer, then new clients from the saved state.
    tc.load_state(state_path).result(timeout=30)
    tc.load_state_with_optimizer(state_path).result(timeout=30)
    loss_here = tc.forward([datum], "cross_entropy").result(timeout=30).metrics["loss:sum"]
    restored = sc.create_training_client_from_state(state_path)
    assert restored.get_info().lora_rank == 4
    assert restored.forward([datum], "cross_entropy").result(timeout=30).metrics["loss:sum"] == \
        pytest.approx(loss_here, rel=1e-5)
    with_optimizer = sc.create_training_client_from_state_with_optimizer(state_path)
    with_optimizer.forward_backward([datum], "cross_entropy").result(timeout=30)
    with_optimizer.optim_step(types.AdamParams(learning_rate=1e-3)).result(timeout=30)
    assert sdk_warnings(caplog.records) == []


def test_every_rest_client_call(sdk_env: LocalService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sc = _client(sdk_env)
    tc = sc.create_lora_training_client(base_model="tiny-bpe", rank=2, user_metadata={"team": "compat"})
    run_id = tc.model_id
    state_path = tc.save_state("rest-a").result(timeout=30).path
    other_path = tc.save_state("rest-b").result(timeout=30).path
    sampler_path = tc.save_weights_for_sampler("rest-s").result(timeout=30).path
    sampler = sc.create_sampling_client(model_path=sampler_path)
    rc = sc.create_rest_client()

    runs = rc.list_training_runs(limit=100).result(timeout=30)
    assert run_id in [r.training_run_id for r in runs.training_runs]
    assert runs.cursor.total_count >= 1
    run = rc.get_training_run(run_id).result(timeout=30)
    assert (run.base_model, run.lora_rank, run.user_metadata) == ("tiny-bpe", 2, {"team": "compat"})
    assert run.last_sampler_checkpoint is not None
    assert rc.get_training_run_by_tinker_path(state_path).result(timeout=30).training_run_id == run_id
    info = rc.get_weights_info_by_tinker_path(state_path).result(timeout=30)
    assert (info.base_model, info.is_lora, info.lora_rank) == ("tiny-bpe", True, 2)

    listed = rc.list_checkpoints(run_id).result(timeout=30).checkpoints
    assert {c.checkpoint_id for c in listed} == {"weights/rest-a", "weights/rest-b", "sampler_weights/rest-s"}
    user = rc.list_user_checkpoints(limit=1000).result(timeout=30).checkpoints
    times = [c.time for c in user]
    assert times == sorted(times, reverse=True)  # newest first

    archive = rc.get_checkpoint_archive_url(run_id, "weights/rest-a").result(timeout=30)
    assert archive.url.startswith(sdk_env.base_url)
    assert rc.get_checkpoint_archive_url_from_tinker_path(state_path).result(timeout=30).url

    rc.publish_checkpoint_from_tinker_path(state_path).result(timeout=30)
    assert [c.public for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints
            if c.tinker_path == state_path] == [True]
    with pytest.raises(tinker.BadRequestError):  # already public: 400 at once (not a 409 retry spin)
        rc.publish_checkpoint_from_tinker_path(state_path).result(timeout=30)
    rc.unpublish_checkpoint_from_tinker_path(state_path).result(timeout=30)

    session_id = sc.holder.get_session_id()
    assert session_id in rc.list_sessions(limit=1000).result(timeout=30).sessions
    session = rc.get_session(session_id).result(timeout=30)
    assert run_id in session.training_run_ids
    assert sampler._sampling_session_id in session.sampler_ids
    got = rc.get_sampler(sampler._sampling_session_id).result(timeout=30)
    assert (got.base_model, got.model_path) == ("tiny-bpe", sampler_path)

    rc.delete_checkpoint(run_id, "weights/rest-b").result(timeout=30)
    rc.delete_checkpoint_from_tinker_path(state_path).result(timeout=30)
    remaining = {c.tinker_path for c in rc.list_checkpoints(run_id).result(timeout=30).checkpoints}
    assert remaining == {sampler_path}
    assert other_path not in remaining
    assert sdk_warnings(caplog.records) == []


def test_telemetry_reaches_the_service(sdk_env: LocalService, caplog: pytest.LogCaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With TINKER_TELEMETRY=1 a failing call flushes telemetry at once; the service accepts it."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("TINKER_TELEMETRY", "1")
    sc = _client(sdk_env)
    tc = sc.create_lora_training_client(base_model="tiny-byte", rank=2)
    too_long = list(range(100)) * 7  # 700 tokens > the 512-token context window
    with pytest.raises(tinker.RequestFailedError) as failure:
        tc.forward_backward([_datum(too_long)], "cross_entropy").result(timeout=30)
    assert failure.value.category == tinker.types.RequestErrorCategory.User
    session_id = sc.holder.get_session_id()
    events = [e for e in sdk_env.telemetry_events() if e["batch"].get("session_id") == session_id]
    kinds = {e["event"] for e in events}
    assert {"SESSION_START", "SESSION_END"} <= kinds
    assert any(e.get("event_name") == "user_error" for e in events)
    assert sdk_warnings(caplog.records) == []
