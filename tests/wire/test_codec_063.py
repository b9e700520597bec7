"""The 0.6.3 codec: the JSON bodies the rest of the SDK already sends, behind the same interface as 0.38."""

from __future__ import annotations

import json

import pytest

from tinker_actors.errors import APIResponseValidationError, UnsupportedFeatureError
from tinker_actors.types import (
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    ForwardRequest,
    ModelInput,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampleRequest,
    SamplingParams,
    encode_json,
)
from tinker_actors.wire import ForwardBackwardCall, client_codec
from tinker_actors.wire.v0_6_3 import CODEC

FB_INPUT = ForwardBackwardInput(data=[Datum(model_input=ModelInput.from_ints([1, 2]),
                                            loss_fn_inputs={"target_tokens": [2, 3], "weights": [1.0, 0.5]})],
                                loss_fn="cross_entropy")


def test_forward_backward_and_forward_are_two_json_endpoints() -> None:
    backward = CODEC.encode_forward_backward(ForwardBackwardCall("run-0", 3, FB_INPUT), compress=True)
    assert backward.path == "/api/v1/forward_backward"
    assert backward.body.headers() == {"Content-Type": "application/json"}  # 0.6.3 never compresses
    assert backward.body.content == encode_json(
        ForwardBackwardRequest(forward_backward_input=FB_INPUT, model_id="run-0", seq_id=3))
    forward = CODEC.encode_forward_backward(ForwardBackwardCall("run-0", 4, FB_INPUT, forward_only=True))
    assert forward.path == "/api/v1/forward"
    assert forward.body.content == encode_json(ForwardRequest(forward_input=FB_INPUT, model_id="run-0", seq_id=4))
    assert "forward_input" in json.loads(forward.body.content)


def test_results_are_json_and_bad_ones_are_response_validation_errors() -> None:
    output = CODEC.decode_forward_backward_output(
        b'{"loss_fn_output_type": "ArrayRecord", "metrics": {"loss:sum": 1.0}, '
        b'"loss_fn_outputs": [{"logprobs": {"data": [-1.0], "dtype": "float32"}}]}', "application/json")
    assert output.loss_fn_outputs[0]["logprobs"].data == [-1.0]
    sample = CODEC.decode_sample_response(b'{"sequences": [{"stop_reason": "stop", "tokens": [4]}]}',
                                          "application/json")
    assert sample.sequences[0].tokens == [4]
    with pytest.raises(APIResponseValidationError, match="ForwardBackwardOutput"):
        CODEC.decode_forward_backward_output(b'{"metrics": "secret-looking text"}', "application/json")
    with pytest.raises(APIResponseValidationError) as raised:
        CODEC.decode_sample_response(b'{"sequences": "tml-not-echoed"}', "application/json")
    assert "tml-not-echoed" not in str(raised.value)


def test_the_codec_is_found_by_its_version() -> None:
    assert client_codec("0.6.3") is CODEC
    assert CODEC.result_accept == "application/json"


def test_stable_reinforce_and_provenance_spans_need_protocol_0_38() -> None:
    """0.6.3's Datum has no spans and its service no StableReinforce: refused typed, before anything is sent."""
    spans = [PromptProvenanceSpan(sequence_id="req-a:0", length=2)]
    with_spans = FB_INPUT.data[0].with_provenance(spans, [SampledProvenanceSpan(sequence_id="req-a:0", length=2)])
    cases = {"Datum.model_input_spans": FB_INPUT.model_copy(update={"data": [with_spans]}),
             "ForwardBackwardInput.loss_fn": FB_INPUT.model_copy(update={"loss_fn": "stable_reinforce"})}
    for feature, fb_input in cases.items():
        for forward_only in (False, True):
            with pytest.raises(UnsupportedFeatureError, match=r"needs? protocol 0\.38") as refused:
                CODEC.prepare_forward_backward("run-0", fb_input, forward_only=forward_only)
            assert refused.value.feature == feature
            with pytest.raises(UnsupportedFeatureError):
                CODEC.encode_forward_backward(ForwardBackwardCall("run-0", 1, fb_input, forward_only))
    with pytest.raises(UnsupportedFeatureError, match=r"record_stability_info needs protocol 0\.38"):
        CODEC.encode_json(SampleRequest(prompt=ModelInput.from_ints([1]), sampling_params=SamplingParams(),
                                        record_stability_info=True))
