"""The same inputs built with the official tinker==0.6.3 types and with ours give identical wire bytes.

The official SDK sends ``json.dumps(model.model_dump(exclude_unset=True, mode="json"))`` with httpx's
compact separators; we compare our ``encode_json`` with exactly that, for every request type.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker_actors.types as ours
from tests.types.strategies import adam_spec, datum_spec, name, sampling_params_spec, tokens

tinker = pytest.importorskip("tinker", reason="the compat extra (tinker==0.6.3) is not installed")
theirs = tinker.types

pytestmark = pytest.mark.compat


def official_bytes(model: Any) -> bytes:
    body = model.model_dump(exclude_unset=True, mode="json")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def same_wire(official: Any, mine: Any) -> None:
    expected = official_bytes(official)
    actual = ours.encode_json(mine)
    # Same keys, in the same order, with the same values. Python prints 1e-05 where pydantic-core prints
    # 0.00001 (both the same float64), so bytes may differ only in how such a number is spelled.
    assert json.loads(actual, object_pairs_hook=list) == json.loads(expected, object_pairs_hook=list)
    if b"e-0" not in expected and b"e-" not in actual:
        assert actual == expected


def build_datum(types: Any, spec: dict[str, Any]) -> Any:
    inputs: dict[str, Any] = {}
    for key, (form, values) in spec["inputs"].items():
        if form == "numpy":
            inputs[key] = np.asarray(values, dtype=np.float32)
        else:
            inputs[key] = list(values)
    return types.Datum(model_input=types.ModelInput.from_ints(spec["tokens"]), loss_fn_inputs=inputs)


@settings(max_examples=60, deadline=None)
@given(data=st.lists(datum_spec(), min_size=1, max_size=4), loss=st.sampled_from(ours.LOSS_FUNCTIONS),
       config=st.one_of(st.none(), st.dictionaries(st.sampled_from(["clip_low_threshold", "clip_high_threshold",
                                                                    "beta"]), st.floats(0.0, 5.0))),
       seq=st.integers(1, 10_000), forward_only=st.booleans())
def test_forward_backward_and_forward(data: list[dict[str, Any]], loss: str, config: dict[str, float] | None,
                                      seq: int, forward_only: bool) -> None:
    def build(types: Any) -> Any:
        fb_input = types.ForwardBackwardInput(data=[build_datum(types, d) for d in data], loss_fn=loss,
                                              loss_fn_config=config)
        if forward_only:
            return types.ForwardRequest(forward_input=fb_input, model_id="run-0", seq_id=seq)
        return types.ForwardBackwardRequest(forward_backward_input=fb_input, model_id="run-0", seq_id=seq)

    same_wire(build(theirs), build(ours))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=12),
       form=st.sampled_from(["float64", "float32", "float16", "torch64", "torch32", "torch_bf16"]),
       key=st.sampled_from(["advantages", "weights", "logprobs"]))
def test_float_arrays_under_float32_keys(values: list[float], form: str, key: str) -> None:
    """A float array is written with the precision it has (float64 0.1 as 0.1), as the official SDK does."""
    def array() -> Any:
        if form.startswith("torch"):
            torch = pytest.importorskip("torch")
            dtype = {"torch64": torch.float64, "torch32": torch.float32, "torch_bf16": torch.bfloat16}[form]
            return torch.tensor(values, dtype=dtype)
        with np.errstate(over="ignore"):
            return np.asarray(values, dtype=form)

    def build(types: Any) -> Any:
        return types.Datum(model_input=types.ModelInput.from_ints([1] * len(values)),
                           loss_fn_inputs={"target_tokens": [2] * len(values), key: array()})

    if not np.all(np.isfinite(build(ours).loss_fn_inputs[key].data)):
        return  # a float64 beyond the float16 or bfloat16 range: refused later, by the training call
    same_wire(build(theirs), build(ours))


def test_float64_advantages_are_written_as_given() -> None:
    def build(types: Any) -> Any:
        return types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]),
                           loss_fn_inputs={"target_tokens": [2, 3, 4], "advantages": np.array([0.1, 0.2, 0.3])})

    assert ours.encode_json(build(ours)) == official_bytes(build(theirs))
    assert b"[0.1,0.2,0.3]" in ours.encode_json(build(ours))


@settings(max_examples=60, deadline=None)
@given(prompt=tokens, params=sampling_params_spec, num=st.integers(1, 8), seq=st.integers(0, 1000),
       prompt_logprobs=st.booleans(), topk=st.integers(0, 5))
def test_sample_request(prompt: list[int], params: dict[str, Any], num: int, seq: int, prompt_logprobs: bool,
                        topk: int) -> None:
    def build(types: Any) -> Any:
        return types.SampleRequest(num_samples=num, prompt=types.ModelInput.from_ints(prompt),
                                   sampling_params=types.SamplingParams(**params), sampling_session_id="s:sample:0",
                                   seq_id=seq, prompt_logprobs=prompt_logprobs, topk_prompt_logprobs=topk)

    same_wire(build(theirs), build(ours))


@settings(max_examples=40, deadline=None)
@given(adam=adam_spec, seq=st.integers(1, 1000))
def test_optim_step(adam: dict[str, float], seq: int) -> None:
    same_wire(theirs.OptimStepRequest(adam_params=theirs.AdamParams(**adam), model_id="m", seq_id=seq),
              ours.OptimStepRequest(adam_params=ours.AdamParams(**adam), model_id="m", seq_id=seq))


@settings(max_examples=40, deadline=None)
@given(rank=st.integers(1, 128), seed=st.one_of(st.none(), st.integers(0, 2**31)), mlp=st.booleans(),
       attn=st.booleans(), unembed=st.booleans(), meta=st.one_of(st.none(), st.dictionaries(name, name, max_size=3)),
       model_seq=st.integers(0, 50))
def test_create_model(rank: int, seed: int | None, mlp: bool, attn: bool, unembed: bool,
                      meta: dict[str, str] | None, model_seq: int) -> None:
    def build(types: Any) -> Any:
        lora = types.LoraConfig(rank=rank, seed=seed, train_unembed=unembed, train_mlp=mlp, train_attn=attn)
        return types.CreateModelRequest(session_id="sess", model_seq_id=model_seq, base_model="tiny-bpe",
                                        user_metadata=meta, lora_config=lora)

    same_wire(build(theirs), build(ours))


@settings(max_examples=30, deadline=None)
@given(checkpoint=name, seq=st.integers(1, 1000), optimizer=st.booleans(), ephemeral_seq=st.integers(0, 20))
def test_checkpoint_requests(checkpoint: str, seq: int, optimizer: bool, ephemeral_seq: int) -> None:
    path = f"tinker://run-0/weights/{checkpoint}"
    pairs = [
        (theirs.SaveWeightsRequest(model_id="m", path=checkpoint, seq_id=seq),
         ours.SaveWeightsRequest(model_id="m", path=checkpoint, seq_id=seq)),
        (theirs.SaveWeightsForSamplerRequest(model_id="m", path=checkpoint, seq_id=seq),
         ours.SaveWeightsForSamplerRequest(model_id="m", path=checkpoint, seq_id=seq)),
        (theirs.SaveWeightsForSamplerRequest(model_id="m", sampling_session_seq_id=ephemeral_seq, seq_id=seq),
         ours.SaveWeightsForSamplerRequest(model_id="m", sampling_session_seq_id=ephemeral_seq, seq_id=seq)),
        (theirs.LoadWeightsRequest(model_id="m", path=path, optimizer=optimizer, seq_id=seq),
         ours.LoadWeightsRequest(model_id="m", path=path, optimizer=optimizer, seq_id=seq)),
    ]
    for official, mine in pairs:
        same_wire(official, mine)
    assert theirs.ParsedCheckpointTinkerPath.from_tinker_path(path).model_dump() == \
        ours.ParsedCheckpointTinkerPath.from_tinker_path(path).model_dump(exclude={"expires_at", "user_metadata"})


@settings(max_examples=30, deadline=None)
@given(tags=st.lists(name, max_size=4), meta=st.dictionaries(name, name, max_size=3), seq=st.integers(0, 50),
       use_path=st.booleans())
def test_session_requests(tags: list[str], meta: dict[str, str], seq: int, use_path: bool) -> None:
    same_wire(theirs.CreateSessionRequest(tags=tags, user_metadata=meta, sdk_version="0.6.3"),
              ours.CreateSessionRequest(tags=tags, user_metadata=meta, sdk_version="0.6.3"))
    same_wire(theirs.SessionHeartbeatRequest(session_id="s"), ours.SessionHeartbeatRequest(session_id="s"))
    base, path = (None, "tinker://run-0/sampler_weights/a") if use_path else ("tiny-bpe", None)
    same_wire(theirs.CreateSamplingSessionRequest(session_id="s", sampling_session_seq_id=seq, base_model=base,
                                                  model_path=path),
              ours.CreateSamplingSessionRequest(session_id="s", sampling_session_seq_id=seq, base_model=base,
                                                model_path=path))
    for official, mine in [(theirs.GetInfoRequest(model_id="m"), ours.GetInfoRequest(model_id="m")),
                           (theirs.UnloadModelRequest(model_id="m"), ours.UnloadModelRequest(model_id="m")),
                           (theirs.FutureRetrieveRequest(request_id="r"), ours.FutureRetrieveRequest(request_id="r"))]:
        same_wire(official, mine)


def test_image_chunks_and_builders() -> None:
    def build(types: Any) -> Any:
        prompt = types.ModelInput.empty().append(types.EncodedTextChunk(tokens=[1, 2])).append_int(3)
        prompt = prompt.append(types.ImageChunk(data=b"\x89PNG", format="png", expected_tokens=4))
        prompt = prompt.append(types.ImageAssetPointerChunk(format="jpeg", location="s3://x", expected_tokens=2))
        return types.SampleRequest(prompt=prompt, sampling_params=types.SamplingParams(max_tokens=1),
                                   sampling_session_id="s", seq_id=0)

    same_wire(build(theirs), build(ours))
    assert build(theirs).prompt.length == build(ours).prompt.length == 9


def test_telemetry_batch() -> None:
    from datetime import UTC, datetime

    from tinker.types.generic_event import GenericEvent

    stamp = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    common = {"event_id": "e1", "event_session_index": 0, "severity": "INFO", "timestamp": stamp}
    official = theirs.TelemetrySendRequest(
        events=[theirs.SessionStartEvent(event="SESSION_START", **common),
                GenericEvent(event="GENERIC_EVENT", event_name="x", event_data={"a": 1}, **common)],
        platform="Linux", sdk_version="0.6.3", session_id="s")
    mine = ours.TelemetrySendRequest(
        events=[ours.SessionStartEvent(event="SESSION_START", **common),
                ours.GenericEvent(event="GENERIC_EVENT", event_name="x", event_data={"a": 1}, **common)],
        platform="Linux", sdk_version="0.6.3", session_id="s")
    # The official SDK prints ``+00:00``; the wire protocol observed ``Z`` from its telemetry path. Both
    # parse to the same instant, which is what a server reads.
    theirs_dict = json.loads(official_bytes(official))
    ours_dict = json.loads(ours.encode_json(mine))
    for event in theirs_dict["events"] + ours_dict["events"]:
        event["timestamp"] = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).isoformat()
    assert theirs_dict == ours_dict


def test_official_responses_parse_in_ours() -> None:
    """Responses the official types accept, ours accept, with the same values."""
    payloads: list[tuple[str, dict[str, Any]]] = [
        ("ForwardBackwardOutput", {"loss_fn_output_type": "target_token_logprobs",
                                   "loss_fn_outputs": [{"logprobs": {"data": [-1.5], "dtype": "float32"}}],
                                   "metrics": {"loss:sum": 1.5}, "extra": 1}),
        ("SampleResponse", {"sequences": [{"stop_reason": "stop", "tokens": [1], "logprobs": [-0.1]}],
                            "prompt_logprobs": [None, -1.0], "topk_prompt_logprobs": [None, [[3, -0.5]]]}),
        ("TrainingRunsResponse", {"training_runs": [{"training_run_id": "r", "base_model": "b", "model_owner": "o",
                                                     "is_lora": True, "lora_rank": 8,
                                                     "last_request_time": "2026-01-01T00:00:00Z"}],
                                  "cursor": {"offset": 0, "limit": 20, "total_count": 1}}),
        ("GetInfoResponse", {"model_id": "m", "model_data": {"model_name": "x", "tokenizer_id": "t"}}),
        ("CheckpointsListResponse", {"checkpoints": [{"checkpoint_id": "weights/a", "checkpoint_type": "training",
                                                      "time": "2026-01-01T00:00:00+00:00",
                                                      "tinker_path": "tinker://r/weights/a"}]}),
    ]
    for type_name, payload in payloads:
        official = getattr(theirs, type_name).model_validate(payload)
        mine = getattr(ours, type_name).model_validate(payload)
        assert project(mine.model_dump(mode="json"), official.model_dump(mode="json")) == \
            official.model_dump(mode="json")


def project(value: Any, like: Any) -> Any:
    """``value`` cut down to the keys ``like`` has (our responses carry a few newer optional fields)."""
    if isinstance(value, dict) and isinstance(like, dict):
        return {key: project(value.get(key), like[key]) for key in like}
    if isinstance(value, list) and isinstance(like, list) and len(value) == len(like):
        return [project(v, w) for v, w in zip(value, like, strict=True)]
    return value
