"""Our 0.38 bytes against the official tinker==0.38.0 SDK's, in both directions.

Requests: the official SDK encodes a forward_backward through its own resource method (captured
instead of sent); ours must be the same message (as the official classes read it), with the same
path and headers, and our service must read the official bytes back into the same call. Results:
bytes built with the official message classes must read the same through our decoder as through
the official one, and the official readers must read what our service encodes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.wire.conftest import Official038
from tinker_actors.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ImageChunk,
    ModelInput,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampledSequence,
    SampleResponse,
    TensorData,
)
from tinker_actors.wire import CONTENT_TYPE_PROTOBUF, ForwardBackwardCall
from tinker_actors.wire.v0_38 import CODEC


def text(tokens: list[int]) -> dict[str, Any]:
    return {"type": "encoded_text", "tokens": tokens}


def tensor(data: list[Any], dtype: str, shape: list[int] | None = None) -> dict[str, Any]:
    return {"data": data, "dtype": dtype, "shape": shape}


REQUESTS: dict[str, dict[str, Any]] = {
    "cross_entropy": {
        "model_id": "run-0", "seq_id": 1, "loss_fn": "cross_entropy",
        "datums": [{"chunks": [text([5, 6, 7, 2**31 - 1])],
                    "inputs": {"target_tokens": tensor([6, 7, 8, 2**40], "int64", [4]),
                               "weights": tensor([0.0, 0.1, 1.0, 1.5], "float32", [4])}},
                   {"chunks": [text([9])], "inputs": {"target_tokens": tensor([1], "int64", [1]),
                                                      "weights": tensor([1.0], "float32", [1])}}]},
    "images_and_2d_inputs": {
        "model_id": "run-1", "seq_id": 12, "loss_fn": "importance_sampling",
        "datums": [{"chunks": [text([1, 2]), {"type": "image", "data_hex": b"\x89PNG fake".hex(), "format": "png",
                                              "expected_tokens": 3}, text([3])],
                    "inputs": {"target_tokens": tensor([2, 0, 0, 0, 3, 4], "int64"),
                               "logprobs": tensor([-0.5, -1.0, -1.5, -2.0, -2.5, -3.0], "float32", [2, 3]),
                               "advantages": tensor([0.25] * 6, "float32", [6])}}]},
    "ppo_forward_only": {
        "model_id": "run-0", "seq_id": 2**31 - 1, "loss_fn": "ppo", "forward_only": True,
        "loss_fn_config": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
        "datums": [{"chunks": [text(list(range(300)))],
                    "inputs": {"target_tokens": tensor(list(range(1, 301)), "int64", [300]),
                               "logprobs": tensor([-0.1 * i for i in range(300)], "float32", [300]),
                               "advantages": tensor([(-1.0) ** i for i in range(300)], "float32", [300])}}]},
    "stable_reinforce_with_provenance": {  # the runs of official_038.py's _official_datum (seq-a, seq-b)
        "model_id": "run-2", "seq_id": 3, "loss_fn": "stable_reinforce", "loss_fn_config": {"kl_coeff": 0.05},
        "datums": [{"chunks": [text([5, 6])], "provenance": True,
                    "inputs": {"target_tokens": tensor([6, 7], "int64", [2]),
                               "advantages": tensor([0.5, 0.5], "float32", [2])}},
                   {"chunks": [text([9])], "inputs": {"target_tokens": tensor([1], "int64", [1]),
                                                      "advantages": tensor([1.0], "float32", [1])}}]},
}
# The runs official_038.py attaches to a datum whose spec says "provenance".
SPANS = {"model_input_spans": [PromptProvenanceSpan(sequence_id="seq-a", offset=0, length=2)],
         "loss_fn_input_spans": [SampledProvenanceSpan(sequence_id="seq-b", offset=1, length=2)]}


def our_call(case: dict[str, Any]) -> ForwardBackwardCall:
    data = []
    for spec in case["datums"]:
        chunks: list[Any] = [EncodedTextChunk(tokens=c["tokens"]) if c["type"] == "encoded_text"
                             else ImageChunk(data=bytes.fromhex(c["data_hex"]), format=c["format"],
                                             expected_tokens=c.get("expected_tokens"))
                             for c in spec["chunks"]]
        inputs = {name: TensorData(data=t["data"], dtype=t["dtype"], shape=t["shape"]) if t["shape"] is not None
                  else TensorData(data=t["data"], dtype=t["dtype"]) for name, t in spec["inputs"].items()}
        data.append(Datum(model_input=ModelInput(chunks=chunks), loss_fn_inputs=inputs,
                          **(SPANS if spec.get("provenance") else {})))
    fb_input = ForwardBackwardInput(data=data, loss_fn=case["loss_fn"], loss_fn_config=case.get("loss_fn_config"))
    return ForwardBackwardCall(model_id=case["model_id"], seq_id=case["seq_id"], input=fb_input,
                               forward_only=case.get("forward_only", False))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_our_request_is_the_official_message(official: Official038, name: str, compress: bool) -> None:
    theirs = official.call("encode_forward_backward", case=REQUESTS[name], compress=compress)
    ours = CODEC.encode_forward_backward(our_call(REQUESTS[name]), compress=compress)
    assert ours.path == theirs["path"]
    assert ours.body.headers() == theirs["headers"]

    def read(body_hex: str) -> dict[str, Any]:
        result: dict[str, Any] = official.call("to_dict", message_name="ForwardBackwardRequest",
                                               body_hex=body_hex, zstd=compress)
        return result

    assert read(ours.body.content.hex()) == read(theirs["body_hex"])
    if not compress:
        # Same bytes up to the order of map entries, which protobuf leaves to each runtime.
        assert len(ours.body.content) == len(bytes.fromhex(theirs["body_hex"]))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "zstd"])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_service_reads_official_requests(official: Official038, name: str, compress: bool) -> None:
    theirs = official.call("encode_forward_backward", case=REQUESTS[name], compress=compress)
    headers = theirs["headers"]
    call = CODEC.decode_forward_backward(bytes.fromhex(theirs["body_hex"]), content_type=headers["Content-Type"],
                                         content_encoding=headers.get("Content-Encoding"))
    expected = our_call(REQUESTS[name])
    # The wire holds float32: compare with the values our own codec puts on the wire.
    assert call == CODEC.decode_forward_backward(CODEC.encode_forward_backward(expected).body.content,
                                                 content_type=CONTENT_TYPE_PROTOBUF)
    assert call.input.loss_fn == expected.input.loss_fn and call.forward_only == expected.forward_only


def test_the_service_reads_official_requests_with_provenance(official: Official038) -> None:
    case = copy.deepcopy(REQUESTS["cross_entropy"])
    case["datums"][0]["provenance"] = True
    theirs = official.call("encode_forward_backward", case=case, compress=False)
    call = CODEC.decode_forward_backward(bytes.fromhex(theirs["body_hex"]), content_type=CONTENT_TYPE_PROTOBUF)
    assert call.input.data[0].model_input.to_ints() == [5, 6, 7, 2**31 - 1]
    first, second = call.input.data
    assert (first.model_input_spans, first.loss_fn_input_spans) == (SPANS["model_input_spans"],
                                                                    SPANS["loss_fn_input_spans"])
    assert second.model_input_spans is None and second.loss_fn_input_spans is None  # none sent, none read


# -- results ---------------------------------------------------------------------------------------------

def field(dtype: str, datums: list[list[Any]], trailing: list[int] | None = None) -> dict[str, Any]:
    return {"dtype": dtype, "datums": datums, "trailing_shape": trailing or []}


OUTPUTS: dict[str, dict[str, Any]] = {
    "float32": {"loss_fn_output_type": "ArrayRecord", "metrics": {"loss:sum": 3.5, "tokens:sum": 5.0},
                "records": [{"num_datums": 3, "fields": {
                    "logprobs": field("float32", [[-0.5, -1.25], [-2.0], [-0.125, -4.0]]),
                    "elementwise_loss": field("float32", [[0.5, 1.25], [2.0], [0.125, 4.0]])}}]},
    "narrow_dtypes": {"loss_fn_output_type": "tinker.types.loss_fn_output:ArrayRecord", "metrics": {},
                      "records": [{"num_datums": 2, "fields": {
                          "logprobs": field("bfloat16", [[-0.5, -1.5], [-3.0]]),
                          "ids": field("int32", [[1, 2], [3]])}}]},
    "ragged": {"loss_fn_output_type": "ArrayRecord", "metrics": {"loss:mean": 0.25},
               "records": [{"num_datums": 1, "fields": {"topk": field("int64", [[1, 2, 3, 4]], [2])}},
                           {"num_datums": 2, "fields": {"topk": field("int64", [[5, 6, 7], [8, 9, 10]], [3])}}]},
    "empty": {"loss_fn_output_type": "", "metrics": {"loss:sum": 0.0}, "records": []},
}


def output_json(output: ForwardBackwardOutput) -> dict[str, Any]:
    return {"loss_fn_output_type": output.loss_fn_output_type, "metrics": dict(output.metrics),
            "loss_fn_outputs": [{name: {"data": list(t.data), "dtype": t.dtype,
                                        "shape": t.shape if t.shape is not None else [t.size]}
                                 for name, t in datum.items()} for datum in output.loss_fn_outputs]}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_we_read_official_output_bytes_as_the_official_sdk_does(official: Official038, name: str) -> None:
    built = official.call("build_forward_backward_output", spec=OUTPUTS[name])
    ours = CODEC.decode_forward_backward_output(bytes.fromhex(built["body_hex"]), CONTENT_TYPE_PROTOBUF)
    assert output_json(ours) == built["official"]


def test_the_official_sdk_reads_our_outputs(official: Official038) -> None:
    output = ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", metrics={"loss:sum": 1.5}, loss_fn_outputs=[
        {"logprobs": TensorData.from_list([-0.5, -0.25], "float32"), "ids": TensorData.from_list([4, 5], "int64")},
        {"logprobs": TensorData(data=[-1.0], dtype="float32"), "ids": TensorData.from_list([6], "int64")},
        {"logprobs": TensorData(data=[-1.0, -2.0, -3.0, -4.0], dtype="float32", shape=[2, 2]),
         "ids": TensorData(data=[1, 2], dtype="int64", shape=[1, 2])}])
    body = CODEC.encode_forward_backward_output(output)
    assert official.call("read_forward_backward_output", body_hex=body.content.hex()) == output_json(output)


SAMPLES: dict[str, dict[str, Any]] = {
    "with_prompt_logprobs": {
        "sequences": [{"stop_reason": "length", "tokens": [5, 6, 2**31 - 1], "logprobs": [-0.5, -0.25, -8.0]},
                      {"stop_reason": "stop", "tokens": [7], "logprobs": [-1.5]}],
        "prompt_logprobs": [None, -0.5, -1.25],
        "topk": {"k": 2, "rows": [None, [[5, -0.125], [6, -2.0]], [[7, -0.375]]]}},
    "tokens_only": {"sequences": [{"stop_reason": "stop", "tokens": [1, 2, 3], "logprobs": None}]},
}


def sample_json(response: SampleResponse) -> dict[str, Any]:
    rows = response.topk_prompt_logprobs
    return {"sequences": [{"stop_reason": s.stop_reason, "tokens": list(s.tokens), "logprobs": s.logprobs}
                          for s in response.sequences],
            "prompt_logprobs": response.prompt_logprobs,
            "topk_prompt_logprobs": None if rows is None else
            [None if row is None else [[t, lp] for t, lp in row] for row in rows]}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_we_read_official_sample_bytes_as_the_official_sdk_does(official: Official038, name: str) -> None:
    built = official.call("build_sample_response", spec=SAMPLES[name])
    ours = CODEC.decode_sample_response(bytes.fromhex(built["body_hex"]), CONTENT_TYPE_PROTOBUF)
    assert sample_json(ours) == built["official"]


def test_the_official_sdk_reads_our_samples(official: Official038) -> None:
    response = SampleResponse(
        sequences=[SampledSequence(stop_reason="length", tokens=[3, 4], logprobs=[-0.5, -1.0]),
                   SampledSequence(stop_reason="stop", tokens=[9])],
        prompt_logprobs=[None, -0.75], topk_prompt_logprobs=[None, [(3, -0.5), (8, -1.5), (2, -4.0)]])
    body = CODEC.encode_sample_response(response)
    assert official.call("read_sample_response", body_hex=body.content.hex()) == sample_json(response)
