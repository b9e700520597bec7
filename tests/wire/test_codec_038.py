"""The 0.38 codec on its own: round trips, the wire's conventions, and typed errors for bad bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.types import (
    LOSS_FUNCTIONS,
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    PromptProvenanceSpan,
    SampledProvenanceSpan,
    SampledSequence,
    SampleResponse,
    TensorData,
)
from tinker_actors.wire import CONTENT_TYPE_PROTOBUF, ForwardBackwardCall, client_codec
from tinker_actors.wire.v0_38 import CODEC
from tinker_actors.wire.v0_38 import tinker_pb2 as pb
from tinker_actors.wire.v0_38.writer import packed_int64_field

PROTOBUF = CONTENT_TYPE_PROTOBUF
INT32 = st.integers(-(2**31), 2**31 - 1)
FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
NAMES = st.text(alphabet="abcdefgh_", min_size=1, max_size=8)


def call_of(data: list[Datum], *, loss_fn: str = "cross_entropy", config: dict[str, float] | None = None,
            seq_id: int = 1, forward_only: bool = False) -> ForwardBackwardCall:
    fb_input = ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=config)  # type: ignore[arg-type]
    return ForwardBackwardCall(model_id="run-0", seq_id=seq_id, input=fb_input, forward_only=forward_only)


def text_datum(tokens: list[int], **inputs: Any) -> Datum:
    return Datum(model_input=ModelInput.from_ints(tokens), loss_fn_inputs=inputs)


def server_decode(content: bytes, encoding: str | None = None, **kwargs: Any) -> ForwardBackwardCall:
    return CODEC.decode_forward_backward(content, content_type=PROTOBUF, content_encoding=encoding, **kwargs)


# -- strategies ------------------------------------------------------------------------------------

@st.composite
def tensors(draw: st.DrawFn, dtype: str | None = None, trailing: list[int] | None = None) -> TensorData:
    dtype = dtype or draw(st.sampled_from(["float32", "int64"]))
    if trailing is None:
        shape: list[int] | None = draw(st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=1, max_size=3)))
    else:
        shape = [draw(st.integers(0, 4)), *trailing]
    size = math.prod(shape) if shape is not None else draw(st.integers(0, 6))
    values = st.integers(-(2**63), 2**63 - 1) if dtype == "int64" else FLOAT32
    data = draw(st.lists(values, min_size=size, max_size=size))
    if shape is None:
        return TensorData(data=data, dtype=dtype)  # type: ignore[arg-type]
    return TensorData(data=data, dtype=dtype, shape=shape)  # type: ignore[arg-type]


@st.composite
def datums(draw: st.DrawFn) -> Datum:
    chunks: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            chunks.append(EncodedTextChunk(tokens=draw(st.lists(INT32, max_size=6))))
        else:
            chunks.append(ImageChunk(data=draw(st.binary(max_size=8)), format=draw(st.sampled_from(["png", "jpeg"])),
                                     expected_tokens=draw(st.one_of(st.none(), st.integers(0, 2**31 - 1)))))
    inputs = draw(st.dictionaries(NAMES, tensors(), max_size=3))
    return Datum(model_input=ModelInput(chunks=chunks), loss_fn_inputs=inputs)


@st.composite
def calls(draw: st.DrawFn) -> ForwardBackwardCall:
    config = draw(st.one_of(st.none(), st.dictionaries(NAMES, st.floats(allow_nan=False), min_size=1, max_size=3)))
    return call_of(draw(st.lists(datums(), max_size=3)), loss_fn=draw(st.sampled_from(LOSS_FUNCTIONS)),
                   config=config, seq_id=draw(st.integers(0, 2**31 - 1)), forward_only=draw(st.booleans()))


@st.composite
def outputs(draw: st.DrawFn) -> ForwardBackwardOutput:
    names = draw(st.lists(NAMES, min_size=0, max_size=3, unique=True))
    kinds = {name: (draw(st.sampled_from(["float32", "int64"])), draw(st.sampled_from([[], [2], [1, 3]])))
             for name in names}
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        # Trailing shapes may change from one datum to the next (a ragged result).
        rows.append({name: draw(tensors(dtype, draw(st.sampled_from([trailing, [3]]))))
                     for name, (dtype, trailing) in kinds.items()})
    metrics = draw(st.dictionaries(NAMES.map(lambda n: f"{n}:sum"), st.floats(allow_nan=False), max_size=3))
    return ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=rows, metrics=metrics)


TOPK_ENTRY = st.tuples(INT32, FLOAT32).filter(lambda e: not (e[0] == 0 and e[1] == -99999.0))


@st.composite
def sample_responses(draw: st.DrawFn) -> SampleResponse:
    sequences = []
    for _ in range(draw(st.integers(1, 3))):
        tokens = draw(st.lists(INT32, max_size=6))
        logprobs = draw(st.one_of(st.none(), st.lists(FLOAT32, min_size=len(tokens), max_size=len(tokens))))
        sequences.append(SampledSequence(stop_reason=draw(st.sampled_from(["stop", "length"])), tokens=tokens,
                                         logprobs=logprobs))
    fields: dict[str, Any] = {"sequences": sequences}
    if draw(st.booleans()):
        fields["prompt_logprobs"] = draw(st.lists(st.one_of(st.none(), FLOAT32), min_size=1, max_size=6))
    if draw(st.booleans()):
        fields["topk_prompt_logprobs"] = draw(st.lists(
            st.one_of(st.none(), st.lists(TOPK_ENTRY, min_size=1, max_size=3)), min_size=1, max_size=5))
    return SampleResponse(**fields)


def as_output_json(output: ForwardBackwardOutput) -> dict[str, Any]:
    """Outputs as plain data; a flat tensor's shape is its length (the wire always gives one)."""
    return {"type": output.loss_fn_output_type, "metrics": output.metrics,
            "outputs": [{name: (t.dtype, t.shape if t.shape is not None else [t.size], list(t.data))
                         for name, t in datum.items()} for datum in output.loss_fn_outputs]}


# -- round trips ---------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(call=calls(), compress=st.booleans())
def test_forward_backward_request_round_trips(call: ForwardBackwardCall, compress: bool) -> None:
    request = CODEC.encode_forward_backward(call, compress=compress)
    assert request.path == "/api/v1/forward_backward"
    assert request.body.headers() == ({"Content-Type": PROTOBUF, "Content-Encoding": "zstd"} if compress
                                      else {"Content-Type": PROTOBUF})
    assert server_decode(request.body.content, request.body.content_encoding) == call


@settings(max_examples=60, deadline=None)
@given(output=outputs())
def test_forward_backward_output_round_trips(output: ForwardBackwardOutput) -> None:
    body = CODEC.encode_forward_backward_output(output)
    assert body.content_type == PROTOBUF
    assert as_output_json(CODEC.decode_forward_backward_output(body.content, body.content_type)) == \
        as_output_json(output)


@settings(max_examples=60, deadline=None)
@given(response=sample_responses())
def test_sample_response_round_trips(response: SampleResponse) -> None:
    body = CODEC.encode_sample_response(response)
    assert CODEC.decode_sample_response(body.content, body.content_type) == response


def reference_message(call: ForwardBackwardCall) -> pb.ForwardBackwardRequest:
    """The request built with the generated classes, field by field (what the codec's writer must equal)."""
    message = pb.ForwardBackwardRequest(model_id=call.model_id, seq_id=call.seq_id, loss_fn=call.input.loss_fn,
                                        forward_only=call.forward_only)
    for name, value in (call.input.loss_fn_config or {}).items():
        message.loss_fn_config[name] = value
        message.loss_fn_config_v2[name].number = value
    for datum in call.input.data:
        datum_message = message.data.add()
        for chunk in datum.model_input.chunks:
            if isinstance(chunk, EncodedTextChunk):
                datum_message.model_input.add().encoded_text.tokens = np.array(chunk.tokens, "<i4").tobytes()
            else:
                image = datum_message.model_input.add().image
                image.data, image.format = chunk.data, chunk.format
                if chunk.expected_tokens is not None:
                    image.expected_tokens = chunk.expected_tokens
        for name, t in datum.loss_fn_inputs.items():
            tensor = datum_message.loss_fn_inputs[name]
            tensor.dense = np.array(t.data, "<f4" if t.dtype == "float32" else "<i8").tobytes()
            tensor.dtype = pb.DTYPE_FLOAT32 if t.dtype == "float32" else pb.DTYPE_INT64
            tensor.shape.extend(t.shape or [])
    return message


@settings(max_examples=60, deadline=None)
@given(call=calls())
def test_the_direct_writer_matches_the_generated_classes(call: ForwardBackwardCall) -> None:
    content = CODEC.encode_forward_backward(call).body.content
    assert pb.ForwardBackwardRequest.FromString(content) == reference_message(call)
    assert len(content) == reference_message(call).ByteSize()


@pytest.mark.parametrize("seq_id", [0, 1, 127, 128, 2**31 - 1, -1, -(2**31)])
def test_the_writer_handles_defaults_and_negative_varints(seq_id: int) -> None:
    image = ImageChunk(data=b"", format="png", expected_tokens=0)
    datum = Datum(model_input=ModelInput(chunks=[EncodedTextChunk(tokens=[]), image]),
                  loss_fn_inputs={"": TensorData(data=[], dtype="float32")})
    call = ForwardBackwardCall(model_id="", seq_id=seq_id, input=ForwardBackwardInput(
        data=[datum], loss_fn="cross_entropy", loss_fn_config={"zero": 0.0, "minus_zero": -0.0, "nan": math.nan}))
    parsed = pb.ForwardBackwardRequest.FromString(CODEC.encode_forward_backward(call).body.content)
    assert parsed.seq_id == seq_id
    assert parsed.data[0].model_input[1].image.HasField("expected_tokens")
    assert parsed.data[0].loss_fn_inputs[""].WhichOneof("encoding") == "dense"
    assert math.copysign(1.0, parsed.loss_fn_config["minus_zero"]) == -1.0
    assert math.isnan(parsed.loss_fn_config_v2["nan"].number)
    assert parsed.loss_fn_config_v2["zero"].WhichOneof("value") == "number"


@pytest.mark.parametrize("value", [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28, 2**63 - 1, -1])
def test_varints_of_every_width_match_protobuf(value: int) -> None:
    # Lengths of 16 KiB to 2 MiB (every array of a big datum) take a fast path of their own.
    assert packed_int64_field(pb.Tensor.SHAPE_FIELD_NUMBER, [value]) == pb.Tensor(shape=[value]).SerializeToString()


# -- what goes on the wire -------------------------------------------------------------------------

def test_numbers_travel_as_little_endian_packed_bytes_of_the_wire_dtype() -> None:
    datum = text_datum([1, 70_000, -3], target_tokens=np.array([5, 2**40], dtype=np.int64),
                       weights=np.array([[0.5, 1.0]], dtype=np.float64))
    message = pb.ForwardBackwardRequest.FromString(CODEC.encode_forward_backward(call_of([datum])).body.content)
    sent = message.data[0]
    assert sent.model_input[0].encoded_text.tokens == np.array([1, 70_000, -3], dtype="<i4").tobytes()
    targets, weights = sent.loss_fn_inputs["target_tokens"], sent.loss_fn_inputs["weights"]
    assert (targets.dtype, targets.dense, list(targets.shape)) == \
        (pb.DTYPE_INT64, np.array([5, 2**40], dtype="<i8").tobytes(), [2])
    assert (weights.dtype, weights.dense, list(weights.shape)) == \
        (pb.DTYPE_FLOAT32, np.array([0.5, 1.0], dtype="<f4").tobytes(), [1, 2])


def test_forward_is_a_forward_backward_with_forward_only() -> None:
    request = CODEC.encode_forward_backward(call_of([text_datum([1])], forward_only=True))
    assert request.path == "/api/v1/forward_backward"
    assert pb.ForwardBackwardRequest.FromString(request.body.content).forward_only


def test_loss_settings_go_in_both_maps_and_the_newer_one_wins() -> None:
    request = CODEC.encode_forward_backward(call_of([text_datum([1])], loss_fn="ppo", config={"clip": 0.2}))
    message = pb.ForwardBackwardRequest.FromString(request.body.content)
    assert dict(message.loss_fn_config) == {"clip": 0.2}
    assert message.loss_fn_config_v2["clip"].number == 0.2
    message.loss_fn_config["clip"] = 9.0  # a server reads v2 when it is there
    assert server_decode(message.SerializeToString()).input.loss_fn_config == {"clip": 0.2}
    del message.loss_fn_config_v2["clip"]  # an older sender: v1 only
    assert server_decode(message.SerializeToString()).input.loss_fn_config == {"clip": 9.0}


def test_compression_is_zstd_of_the_plain_body() -> None:
    call = call_of([text_datum(list(range(2048)), weights=[1.0] * 2048) for _ in range(8)])
    plain = CODEC.encode_forward_backward(call).body.content
    compressed = CODEC.encode_forward_backward(call, compress=True).body.content
    assert zstandard.ZstdDecompressor().decompress(compressed) == plain
    assert len(compressed) < len(plain) / 4


def test_the_body_repr_does_not_dump_the_bytes() -> None:
    body = CODEC.encode_forward_backward(call_of([text_datum(list(range(1000)))])).body
    assert repr(body) == f"EncodedBody({len(body.content)} bytes, application/x-protobuf)"


# -- what the wire cannot carry: typed errors before anything is sent ----------------------------

@pytest.mark.parametrize("tokens", [[2**31], [-(2**31) - 1], [2**70]])
def test_tokens_outside_int32_are_refused(tokens: list[int]) -> None:
    with pytest.raises(InvalidInputError, match="int32"):
        CODEC.encode_forward_backward(call_of([text_datum([1, *tokens])]))


def test_values_outside_int64_are_refused() -> None:
    datum = text_datum([1], target_tokens=TensorData.model_construct(data=[2**64], dtype="int64", shape=[1]))
    with pytest.raises(InvalidInputError, match="int64"):
        CODEC.encode_forward_backward(call_of([datum]))


def test_seq_id_outside_int32_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="seq_id"):
        CODEC.encode_forward_backward(call_of([text_datum([1])], seq_id=2**31))


def test_image_pointers_have_no_0_38_form() -> None:
    pointer = ImageAssetPointerChunk(format="png", location="s3://bucket/image.png", expected_tokens=4)
    datum = Datum(model_input=ModelInput(chunks=[pointer]), loss_fn_inputs={})
    with pytest.raises(InvalidInputError, match="image_asset_pointer"):
        CODEC.encode_forward_backward(call_of([datum]))


# -- the service reading requests: bad bodies are 400s (InvalidInputError) ------------------------------

def plain_request(**changes: Any) -> pb.ForwardBackwardRequest:
    message = pb.ForwardBackwardRequest.FromString(
        CODEC.encode_forward_backward(call_of([text_datum([1, 2], weights=[1.0, 1.0])])).body.content)
    for name, value in changes.items():
        setattr(message, name, value)
    return message


def test_the_service_refuses_a_json_body() -> None:
    with pytest.raises(InvalidInputError, match="x-protobuf"):
        CODEC.decode_forward_backward(b"{}", content_type="application/json")


def test_the_service_accepts_content_type_parameters() -> None:
    content = plain_request().SerializeToString()
    assert CODEC.decode_forward_backward(content, content_type="Application/X-Protobuf; charset=binary").seq_id == 1


def test_the_service_refuses_unknown_encodings_and_garbage() -> None:
    content = plain_request().SerializeToString()
    with pytest.raises(InvalidInputError, match="Content-Encoding"):
        server_decode(content, "br")
    with pytest.raises(InvalidInputError, match="zstd"):
        server_decode(b"not zstd", "zstd")
    with pytest.raises(InvalidInputError, match="not a valid ForwardBackwardRequest"):
        server_decode(b"\xff\xff\xff")


def test_a_small_body_cannot_inflate_past_the_limit() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * 1_000_000)
    with pytest.raises(InvalidInputError, match="limit"):
        server_decode(bomb, "zstd", max_decompressed_bytes=100_000)
    # Without a declared size (a streaming compressor) the output is bounded while inflating.
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 1_000_000)
    with pytest.raises(InvalidInputError):
        server_decode(undeclared, "zstd", max_decompressed_bytes=100_000)
    assert server_decode(zstandard.ZstdCompressor(write_content_size=False).compress(
        plain_request().SerializeToString()), "zstd").model_id == "run-0"


def test_the_service_refuses_what_the_domain_cannot_hold() -> None:
    cases: dict[str, pb.ForwardBackwardRequest] = {}
    message = plain_request()
    message.data[0].model_input.add().dmel.dmel = b"audio"
    cases["dmel"] = message
    message = plain_request()
    message.data[0].loss_fn_inputs["mask"].sparse_csr.values = b""
    message.data[0].loss_fn_inputs["mask"].dtype = pb.DTYPE_FLOAT32
    cases["a sparse .CSR. tensor needs a 2-D dense shape"] = message  # a CSR layout must fit its shape
    message = plain_request()
    message.loss_fn_config_v2["mode"].SetInParent()  # an entry whose value is neither a number nor text
    cases["neither a number nor text"] = message
    message = plain_request(loss_fn="no_such_loss")
    cases["loss_fn"] = message
    message = plain_request()
    message.data[0].loss_fn_inputs["weights"].shape[:] = [3]
    cases["shape"] = message
    message = plain_request()
    message.data[0].loss_fn_inputs["weights"].dense = b"\0" * 7
    cases["whole number"] = message
    message = plain_request()
    message.data[0].loss_fn_inputs["weights"].dtype = pb.DTYPE_UNSPECIFIED
    cases["unknown dtype"] = message
    message = plain_request()
    message.data[0].model_input.add()
    cases["empty model input chunk"] = message
    message = plain_request()
    message.data[0].model_input.add().image.override_dimensions.width = 4
    cases["override_dimensions"] = message
    for expected, bad in cases.items():
        with pytest.raises(InvalidInputError, match=expected):
            server_decode(bad.SerializeToString())


def test_provenance_spans_are_read_into_the_datum() -> None:
    message = plain_request()
    prompt = message.data[0].model_input_spans.add().prompt_tokens
    prompt.sequence_id, prompt.length = "s-1", 2
    sampled = message.data[0].loss_fn_input_spans.add().sampled_tokens
    sampled.sequence_id, sampled.offset, sampled.length = "s-2", 1, 3
    datum = server_decode(message.SerializeToString()).input.data[0]
    assert datum.model_input_spans == [PromptProvenanceSpan(sequence_id="s-1", length=2)]
    assert datum.loss_fn_input_spans == [SampledProvenanceSpan(sequence_id="s-2", offset=1, length=3)]
    plain = server_decode(plain_request().SerializeToString()).input.data[0]
    assert plain.model_input_spans is None and plain.loss_fn_input_spans is None
    assert datum.model_copy(update={"model_input_spans": None, "loss_fn_input_spans": None}) == plain


def test_runs_in_one_span_field_only_read_as_a_pair() -> None:
    """The wire cannot tell an empty list from None: runs in one field give an empty list in the other."""
    message = plain_request()
    message.data[0].model_input_spans.add().prompt_tokens.sequence_id = "s-1"
    datum = server_decode(message.SerializeToString()).input.data[0]
    assert datum.model_input_spans == [PromptProvenanceSpan(sequence_id="s-1", length=0)]
    assert datum.loss_fn_input_spans == []


@pytest.mark.parametrize(("set_span", "expected"), [
    (lambda span: span, "names no kind of run"),
    (lambda span: setattr(span.prompt_tokens, "length", -1), "length"),
    (lambda span: setattr(span.sampled_tokens, "offset", 5), "sequence_id"),
], ids=["no-kind", "negative-length", "no-sequence-id"])
def test_a_malformed_span_is_refused_by_the_server(set_span: Any, expected: str) -> None:
    message = plain_request()
    span = message.data[0].model_input_spans.add()
    set_span(span)
    with pytest.raises(InvalidInputError, match=expected):
        server_decode(message.SerializeToString())


def test_our_spans_are_the_official_wire_form_and_read_back() -> None:
    """Each run one ProvenanceSpan, its kind the oneof member, in order; read back as it was sent."""
    spans: tuple[list[PromptProvenanceSpan | SampledProvenanceSpan], ...] = (
        [PromptProvenanceSpan(sequence_id="req-a:0", length=2), SampledProvenanceSpan(sequence_id="req-a:0", length=1)],
        [PromptProvenanceSpan(sequence_id="req-a:0", offset=1, length=1),
         SampledProvenanceSpan(sequence_id="req-a:0", length=1),
         SampledProvenanceSpan(sequence_id="req-b:1", offset=4, length=1)])
    datum = Datum(model_input=ModelInput.from_ints([1, 2, 3]),
                  loss_fn_inputs={"target_tokens": [2, 3, 4], "advantages": [1.0, 1.0, 1.0]}).with_provenance(*spans)
    call = ForwardBackwardCall("m", 4, ForwardBackwardInput(data=[datum], loss_fn="stable_reinforce"), False)
    body = CODEC.encode_forward_backward(call).body.content
    message = pb.ForwardBackwardRequest()
    message.ParseFromString(body)
    assert [span.WhichOneof("span") for span in message.data[0].model_input_spans] == \
        ["prompt_tokens", "sampled_tokens"]
    assert [(s.sampled_tokens.sequence_id, s.sampled_tokens.offset) for s in message.data[0].loss_fn_input_spans[1:]] \
        == [("req-a:0", 0), ("req-b:1", 4)]
    assert message.SerializeToString() == body  # canonical field order, as protobuf itself writes it
    assert server_decode(body) == call


def test_int32_and_bfloat16_loss_inputs_widen_to_the_domain_dtypes() -> None:
    message = plain_request()
    tokens = message.data[0].loss_fn_inputs["target_tokens"]
    tokens.dtype, tokens.dense = pb.DTYPE_INT32, np.array([7, -1], dtype="<i4").tobytes()
    weights = message.data[0].loss_fn_inputs["weights"]
    weights.dtype = pb.DTYPE_BFLOAT16
    weights.dense = (np.array([1.5, -2.0], dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
    inputs = server_decode(message.SerializeToString()).input.data[0].loss_fn_inputs
    assert (inputs["target_tokens"].dtype, inputs["target_tokens"].data) == ("int64", [7, -1])
    assert (inputs["weights"].dtype, inputs["weights"].data) == ("float32", [1.5, -2.0])


# -- the client reading results -------------------------------------------------------------------------

def batched(values: list[np.ndarray], proto_dtype: int, trailing: list[int] | None = None) -> pb.BatchedTensor:
    offsets = np.concatenate([[0], np.cumsum([v.nbytes for v in values])]).astype("<i8")
    return pb.BatchedTensor(data=b"".join(v.tobytes() for v in values), offsets=offsets.tobytes(),
                            dtype=proto_dtype, trailing_shape=trailing or [])


def test_a_json_result_is_refused_with_a_clear_error() -> None:
    with pytest.raises(APIResponseValidationError, match="only as application/x-protobuf"):
        CODEC.decode_forward_backward_output(b'{"loss_fn_outputs": []}', "application/json")
    with pytest.raises(APIResponseValidationError, match="only as application/x-protobuf"):
        CODEC.decode_sample_response(b'{"sequences": []}', None)


def test_garbage_results_are_response_validation_errors() -> None:
    with pytest.raises(APIResponseValidationError, match="do not parse"):
        CODEC.decode_forward_backward_output(b"\xff\xff", PROTOBUF)
    bad_stop = pb.SampleResponse()
    bad_stop.sequences.add(stop_reason=7)
    with pytest.raises(APIResponseValidationError, match="stop reason"):
        CODEC.decode_sample_response(bad_stop.SerializeToString(), PROTOBUF)
    short = pb.SampleResponse()
    short.sequences.add(tokens=np.array([1, 2], dtype="<i4").tobytes(),
                        logprobs=np.array([-1.0], dtype="<f4").tobytes())
    with pytest.raises(APIResponseValidationError, match="2 tokens but 1 logprobs"):
        CODEC.decode_sample_response(short.SerializeToString(), PROTOBUF)
    bad_offsets = pb.ForwardBackwardOutput()
    record = bad_offsets.loss_fn_outputs.add(num_datums=1)
    record.fields["logprobs"].CopyFrom(pb.BatchedTensor(data=b"\0" * 8, offsets=np.array([0, 12], "<i8").tobytes(),
                                                        dtype=pb.DTYPE_FLOAT32))
    with pytest.raises(APIResponseValidationError, match="offsets"):
        CODEC.decode_forward_backward_output(bad_offsets.SerializeToString(), PROTOBUF)


def test_results_in_narrow_dtypes_widen_and_ragged_records_concatenate() -> None:
    message = pb.ForwardBackwardOutput(loss_fn_output_type="tinker.types:ArrayRecord")
    message.metrics["loss:sum"] = 2.5
    first = message.loss_fn_outputs.add(num_datums=2)
    first.fields["logprobs"].CopyFrom(batched([(np.array([-0.5, -1.25], "<f4").view("<u4") >> 16).astype("<u2"),
                                               (np.array([-2.0], "<f4").view("<u4") >> 16).astype("<u2")],
                                              pb.DTYPE_BFLOAT16))
    first.fields["ids"].CopyFrom(batched([np.array([1, 2], "<i4"), np.array([3], "<i4")], pb.DTYPE_INT32))
    second = message.loss_fn_outputs.add(num_datums=1)
    second.fields["logprobs"].CopyFrom(batched([np.arange(6, dtype="<f4")], pb.DTYPE_FLOAT32, [3]))
    second.fields["ids"].CopyFrom(batched([np.array([4, 5], "<i8")], pb.DTYPE_INT64, [2]))
    output = CODEC.decode_forward_backward_output(message.SerializeToString(), PROTOBUF)
    assert output.loss_fn_output_type == "ArrayRecord"
    assert as_output_json(output) == {"type": "ArrayRecord", "metrics": {"loss:sum": 2.5}, "outputs": [
        {"logprobs": ("float32", [2], [-0.5, -1.25]), "ids": ("int64", [2], [1, 2])},
        {"logprobs": ("float32", [1], [-2.0]), "ids": ("int64", [1], [3])},
        {"logprobs": ("float32", [2, 3], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]), "ids": ("int64", [1, 2], [4, 5])}]}


def test_num_datums_counts_datums_even_without_fields_and_offsets_count_without_it() -> None:
    empty_fields = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    empty_fields.loss_fn_outputs.add(num_datums=3)
    assert CODEC.decode_forward_backward_output(empty_fields.SerializeToString(), PROTOBUF).loss_fn_outputs == \
        [{}, {}, {}]
    legacy = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord")
    legacy.loss_fn_outputs.add().fields["logprobs"].CopyFrom(
        batched([np.array([-1.0], "<f4"), np.array([-2.0, -3.0], "<f4")], pb.DTYPE_FLOAT32))
    assert [d["logprobs"].data for d in CODEC.decode_forward_backward_output(
        legacy.SerializeToString(), PROTOBUF).loss_fn_outputs] == [[-1.0], [-2.0, -3.0]]
    assert CODEC.decode_forward_backward_output(b"", PROTOBUF).loss_fn_output_type == "ArrayRecord"


def test_prompt_logprobs_nan_is_none_and_topk_sentinels_are_empty_slots() -> None:
    message = pb.SampleResponse()
    message.sequences.add(stop_reason=pb.STOP_REASON_STOP, tokens=np.array([9], "<i4").tobytes())
    message.prompt_logprobs = np.array([np.nan, -0.5], "<f4").tobytes()
    ids = np.array([[0, 0, 0], [4, 0, 0], [0, 5, 0]], "<i4")
    logprobs = np.array([[-99999.0] * 3, [-0.25, -99999.0, -99999.0], [-99999.0, -1.0, -99999.0]], "<f4")
    message.topk_prompt_logprobs.CopyFrom(pb.TopkLogprobs(token_ids=ids.tobytes(), logprobs=logprobs.tobytes(),
                                                          k=3, length=3))
    response = CODEC.decode_sample_response(message.SerializeToString(), PROTOBUF)
    assert response.sequences[0].stop_reason == "stop"
    assert response.sequences[0].logprobs is None
    assert response.prompt_logprobs == [None, -0.5]
    # A row whose first slot is empty means nothing was computed there (as the official reader says).
    assert response.topk_prompt_logprobs == [None, [(4, -0.25)], None]


def test_an_all_empty_topk_prompt_survives_a_round_trip_as_nones() -> None:
    response = SampleResponse(sequences=[SampledSequence(stop_reason="length", tokens=[1])],
                              topk_prompt_logprobs=[None, None])
    body = CODEC.encode_sample_response(response)
    assert CODEC.decode_sample_response(body.content, body.content_type).topk_prompt_logprobs == [None, None]


def test_outputs_with_different_names_per_datum_are_refused() -> None:
    output = ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", metrics={}, loss_fn_outputs=[
        {"logprobs": TensorData.from_list([-1.0], "float32")}, {"other": TensorData.from_list([-1.0], "float32")}])
    with pytest.raises(InvalidInputError, match="same output names"):
        CODEC.encode_forward_backward_output(output)


def test_the_codec_is_found_by_its_version() -> None:
    assert client_codec("0.38") is CODEC
    assert CODEC.result_accept == PROTOBUF
    with pytest.raises(InvalidInputError, match=r"0\.6\.3"):
        client_codec("0.99")


def test_a_ttl_of_none_goes_out_as_null() -> None:
    # None is dropped from 0.38 JSON bodies, except where it means something: removing a checkpoint's expiry.
    from tinker_actors.types.checkpoints import SetCheckpointTtlRequest
    from tinker_actors.wire.v0_38 import json_bodies

    assert json_bodies.encode_json(SetCheckpointTtlRequest(ttl_seconds=None)) == b'{"ttl_seconds":null}'
    assert json_bodies.encode_json(SetCheckpointTtlRequest(ttl_seconds=3600)) == b'{"ttl_seconds":3600}'
