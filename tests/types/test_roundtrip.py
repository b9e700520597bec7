"""Property: every wire type survives encode -> parse -> encode unchanged (what the server reads is what
the client meant)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker_actors.types as T
from tests.types.strategies import adam_spec, datum_spec, name, sampling_params_spec, token, tokens


def assert_round_trip(model: pydantic.BaseModel) -> None:
    wire = T.encode_json(model)
    parsed = type(model).model_validate_json(wire)
    assert T.encode_json(parsed) == wire
    assert parsed == model or parsed.model_dump() == model.model_dump()


def make_datum(spec: dict[str, Any]) -> T.Datum:
    inputs: dict[str, Any] = {}
    for key, (form, values) in spec["inputs"].items():
        inputs[key] = np.asarray(values, dtype=np.float32) if form == "numpy" else list(values)
    return T.Datum(model_input=T.ModelInput.from_ints(spec["tokens"]), loss_fn_inputs=inputs)


datums = st.lists(datum_spec(), min_size=1, max_size=3).map(lambda specs: [make_datum(s) for s in specs])
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))

request_models = st.one_of(
    st.builds(lambda d, loss, seq: T.ForwardBackwardRequest(
        forward_backward_input=T.ForwardBackwardInput(data=d, loss_fn=loss), model_id="m", seq_id=seq),
        datums, st.sampled_from(T.LOSS_FUNCTIONS), st.integers(1, 99)),
    st.builds(lambda d, seq: T.ForwardRequest(forward_input=T.ForwardBackwardInput(
        data=d, loss_fn="cross_entropy", loss_fn_config={"beta": 0.1}), model_id="m", seq_id=seq),
        datums, st.integers(1, 99)),
    st.builds(lambda p, params, n: T.SampleRequest(prompt=T.ModelInput.from_ints(p),
                                                   sampling_params=T.SamplingParams(**params), num_samples=n),
              tokens, sampling_params_spec, st.integers(1, 4)),
    st.builds(lambda a: T.OptimStepRequest(adam_params=T.AdamParams(**a), model_id="m", seq_id=1), adam_spec),
    st.builds(lambda r, s: T.CreateModelRequest(session_id="s", model_seq_id=0, base_model="b",
                                                lora_config=T.LoraConfig(rank=r, seed=s)),
              st.integers(1, 64), st.one_of(st.none(), st.integers(0, 99))),
    st.builds(lambda n, seq: T.SaveWeightsRequest(model_id="m", path=n, seq_id=seq), name, st.integers(1, 9)),
    st.builds(lambda seq: T.SaveWeightsForSamplerRequest(model_id="m", sampling_session_seq_id=seq), st.integers(0, 9)),
    st.builds(lambda o: T.LoadWeightsRequest(model_id="m", path="tinker://r/weights/a", optimizer=o), st.booleans()),
    st.builds(lambda t: T.CreateSessionRequest(tags=t, user_metadata=None, sdk_version="0.6.3"), st.lists(name)),
    st.builds(lambda s: T.CreateSamplingSessionRequest(session_id="s", sampling_session_seq_id=s, base_model="b"),
              st.integers(0, 9)),
    st.builds(lambda ts, i: T.TelemetrySendRequest(events=[
        T.SessionStartEvent(event="SESSION_START", event_id="e", event_session_index=i, severity="INFO", timestamp=ts),
        T.UnhandledExceptionEvent(event="UNHANDLED_EXCEPTION", event_id="f", event_session_index=i + 1,
                                  severity="ERROR", timestamp=ts, error_type="ValueError", error_message="x"),
        T.GenericEvent(event="GENERIC_EVENT", event_id="g", event_session_index=i + 2, severity="WARNING",
                       timestamp=ts, event_name="user_error", event_data={"status_code": 400})],
        platform="Linux", sdk_version="0.1.0", session_id="s"), stamps, st.integers(0, 9)),
)


@settings(max_examples=150, deadline=None)
@given(model=request_models)
def test_requests_round_trip(model: pydantic.BaseModel) -> None:
    assert_round_trip(model)


float_lists = st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=8)

response_models = st.one_of(
    st.builds(lambda lp, loss: T.ForwardBackwardOutput(
        loss_fn_output_type="target_token_logprobs",
        loss_fn_outputs=[{"logprobs": T.TensorData(data=lp, dtype="float32", shape=[len(lp)])}],
        metrics={"loss:sum": loss}), float_lists, st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(lambda toks, stop: T.SampleResponse(sequences=[T.SampledSequence(
        stop_reason=stop, tokens=toks, logprobs=[-1.0] * len(toks))], prompt_logprobs=[None, -0.5],
        topk_prompt_logprobs=[None, [(1, -0.5), (2, -1.5)]]), st.lists(token, max_size=8),
        st.sampled_from(["length", "stop"])),
    st.builds(lambda ts, n: T.TrainingRunsResponse(training_runs=[T.TrainingRun(
        training_run_id="r", base_model="b", model_owner="o", is_lora=True, lora_rank=8, last_request_time=ts,
        last_checkpoint=T.Checkpoint(checkpoint_id="weights/a", checkpoint_type="training", time=ts,
                                     tinker_path="tinker://r/weights/a", size_bytes=n))],
        cursor=T.Cursor(offset=0, limit=20, total_count=1)), stamps, st.integers(0, 2**40)),
    st.builds(lambda rid, qs: T.TryAgainResponse(request_id=rid, queue_state=qs), name,
              st.sampled_from(["active", "paused_capacity", "paused_rate_limit"])),
    st.builds(lambda m: T.GetInfoResponse(model_id=m, model_data=T.ModelData(model_name="b", tokenizer_id="t"),
                                          is_lora=True, lora_rank=4), name),
)


@settings(max_examples=100, deadline=None)
@given(model=response_models)
def test_responses_round_trip(model: pydantic.BaseModel) -> None:
    assert_round_trip(model)
