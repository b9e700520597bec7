"""The 0.38 codec: forward_backward requests and fwd/bwd and sample results as protobuf.

Schema: ``tinker.proto`` beside this module (generated into ``tinker_pb2``). Both sides live here:
the client encodes requests and decodes results; the local service decodes requests and encodes
results. Numbers go between numpy and the packed ``bytes`` fields without Python lists: a
``types.TensorData`` read from the wire holds a read-only view of the message's bytes and makes its
list only if someone reads ``data``; one built from numpy is written with ``tobytes``. Lists a user
passed (tokens, plain-list loss inputs) are packed by ``struct`` (see :mod:`.arrays`).

Sparse (CSR) tensors go both ways as ``sparse_csr`` (values in the tensor's dtype, indices as int64,
packed from and read into numpy arrays); text loss settings go in ``loss_fn_config_v2`` only, numbers in
both maps (servers that predate the v2 map read the first), as the official 0.38 SDK writes them.
What the domain model cannot carry is refused with a typed error rather than dropped: image
pointer chunks (0.38 has no wire form for them), audio (dmel) chunks, image ``override_dimensions``.
Provenance spans are the exception: they are metadata about where tokens came from, do not change
what the losses computed here compute, and are read and dropped.
Sample results carry every 0.38 field both ways (per-sequence top-k, ``target_prompt_logprobs`` dense or
sparse, ``prompt_alt_tokens``, ``prompt_cache_hit_tokens``), read into held arrays (lists on first read).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pydantic
import zstandard
from google.protobuf.message import DecodeError

from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    SampledSequence,
    SampleResponse,
    StopReason,
    TensorData,
)
from tinker_actors.types.prompt_alt_tokens import PromptAltTokens
from tinker_actors.types.sparse_csr import check_csr
from tinker_actors.types.topk_logprobs import TopkLogprobs
from tinker_actors.wire.codec import (
    CONTENT_TYPE_PROTOBUF,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    EncodedBody,
    EncodedRequest,
    ForwardBackwardCall,
    PreparedRequest,
    media_type,
)
from tinker_actors.wire.v0_38 import json_bodies
from tinker_actors.wire.v0_38 import tinker_pb2 as pb
from tinker_actors.wire.v0_38.array_results import SequenceArrays, TargetArrays, sample_message, topk_matrices
from tinker_actors.wire.v0_38.arrays import (
    FLOAT32,
    INT32,
    INT64,
    WireFormatError,
    check_int32,
    domain_dtype_of,
    pack,
    pack_int32,
    proto_dtype_of,
    raw_dtype_of,
    unpack,
    unpack_proto_dtype,
    widen,
)
from tinker_actors.wire.v0_38.request_reader import DatumSlices, RequestSlices, scan_forward_backward
from tinker_actors.wire.v0_38.writer import MessageWriter, field_header, packed_int64_field, varint_field

__all__ = ["CODEC", "FORWARD_BACKWARD_PATH", "TOPK_EMPTY_LOGPROB", "ProtobufCodec"]

FORWARD_BACKWARD_PATH = "/api/v1/forward_backward"
# An unused slot of a top-k matrix: token 0 with this logprob (the 0.38 convention).
TOPK_EMPTY_LOGPROB = -99999.0

_STOP_REASONS: dict[int, StopReason] = {pb.STOP_REASON_STOP: "stop", pb.STOP_REASON_LENGTH: "length"}
_STOP_REASON_CODES: dict[str, pb.StopReason] = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}


class ProtobufCodec:
    """Protocol 0.38: a :class:`~tinker_actors.wire.codec.ClientCodec` and a ``ServerCodec``."""

    @property
    def version(self) -> str:
        return "0.38"

    @property
    def sdk_version(self) -> str:
        return "0.38.0"

    @property
    def sends_sdk_method(self) -> bool:
        return True

    @property
    def result_accept(self) -> str:
        return CONTENT_TYPE_PROTOBUF

    # -- client side --

    def encode_json(self, request: pydantic.BaseModel) -> bytes:
        """Any other request: JSON with defaults included and ``None`` dropped (:mod:`.json_bodies`)."""
        return json_bodies.encode_json(request)

    def encode_retrieve(self, request_id: str, *, allow_metadata_only: bool) -> bytes:
        return json_bodies.encode_retrieve(request_id, allow_metadata_only=allow_metadata_only)

    def encode_forward_backward(self, call: ForwardBackwardCall, *, compress: bool = False) -> EncodedRequest:
        """The protobuf body of ``call``, zstd-compressed when ``compress`` (the server's flag)."""
        prepared = self.prepare_forward_backward(call.model_id, call.input, forward_only=call.forward_only,
                                                 compress=compress)
        return prepared.request(call.seq_id)

    def prepare_forward_backward(self, model_id: str, fb_input: ForwardBackwardInput, *, forward_only: bool = False,
                                 compress: bool = False) -> PreparedRequest:
        """``model_id`` (field 1) is written now, the seq id (field 2) when it is known, then the rest (fields 3
        and up, written now): the same bytes, in field order, as one pass would write."""
        head = MessageWriter()
        head.string(_REQUEST.MODEL_ID_FIELD_NUMBER, model_id)
        # 0.38 has no /forward: a forward pass is a forward_backward with forward_only set.
        return PreparedRequest(FORWARD_BACKWARD_PATH, CONTENT_TYPE_PROTOBUF, head.to_bytes(),
                               _request_tail(fb_input, forward_only), _seq_field,
                               compress=_zstd if compress else None, content_encoding="zstd" if compress else None)

    def decode_forward_backward_output(self, content: bytes, content_type: str | None) -> ForwardBackwardOutput:
        message = _parse_result(pb.ForwardBackwardOutput(), content, content_type, "ForwardBackwardOutput")
        try:
            return _output_from_message(message)
        except WireFormatError as malformed:
            raise _bad_result("ForwardBackwardOutput", str(malformed)) from None

    def decode_sample_response(self, content: bytes, content_type: str | None) -> SampleResponse:
        message = _parse_result(pb.SampleResponse(), content, content_type, "SampleResponse")
        try:
            return _sample_response_from_message(message)
        except WireFormatError as malformed:
            raise _bad_result("SampleResponse", str(malformed)) from None

    # -- server side --

    def decode_forward_backward(self, content: bytes, *, content_type: str | None,
                                content_encoding: str | None = None,
                                max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES) -> ForwardBackwardCall:
        """A submitted forward_backward; ``InvalidInputError`` (a 400) for anything malformed."""
        if media_type(content_type) != CONTENT_TYPE_PROTOBUF:
            raise InvalidInputError(f"a 0.38 forward_backward body is {CONTENT_TYPE_PROTOBUF}, "
                                    f"not {content_type or 'untyped'}")
        raw = _decompress(content, content_encoding, max_decompressed_bytes)
        # The common form is read in place (views of ``raw``, no copies); protobuf parses the rest.
        slices = scan_forward_backward(raw)
        try:
            if slices is not None:
                return _call_from_slices(slices)
            message = pb.ForwardBackwardRequest()
            try:
                message.ParseFromString(raw)
            except DecodeError:
                raise InvalidInputError(
                    "the forward_backward body is not a valid ForwardBackwardRequest message") from None
            return _call_from_message(message)
        except WireFormatError as malformed:
            raise InvalidInputError(f"invalid forward_backward request: {malformed}") from None

    def encode_forward_backward_output(self, output: ForwardBackwardOutput) -> EncodedBody:
        return EncodedBody(_output_message(output).SerializeToString(), CONTENT_TYPE_PROTOBUF)

    def encode_sample_response(self, response: SampleResponse) -> EncodedBody:
        return EncodedBody(_sample_response_message(response).SerializeToString(), CONTENT_TYPE_PROTOBUF)

    def __repr__(self) -> str:
        return "ProtobufCodec(version='0.38')"


CODEC = ProtobufCodec()


# ---------------------------------------------------------------------------------------------------
# forward_backward request: domain -> message (client)

# Field numbers come from the generated module, so tinker.proto stays their one source.
_REQUEST = pb.ForwardBackwardRequest
_MAP_KEY, _MAP_VALUE = 1, 2  # every protobuf map entry is {key = 1, value = 2}


def _zstd(content: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(content)


def _seq_field(seq_id: int) -> bytes:
    field = MessageWriter()
    field.varint(_REQUEST.SEQ_ID_FIELD_NUMBER, check_int32(seq_id, "seq_id"))
    return field.to_bytes()


def _request_tail(fb_input: ForwardBackwardInput, forward_only: bool) -> tuple[bytes | memoryview, ...]:
    """Every field after the seq id, in pieces (the arrays' bytes are views: copied once, into the body)."""
    config = fb_input.loss_fn_config or {}
    request = MessageWriter()
    for index, datum in enumerate(fb_input.data):
        request.message(_REQUEST.DATA_FIELD_NUMBER, _datum_writer(datum, index))
    request.string(_REQUEST.LOSS_FN_FIELD_NUMBER, fb_input.loss_fn)
    # Numeric settings go in both maps: servers that predate the v2 map read the first one. Text exists
    # only in the v2 map.
    for name, value in config.items():
        if isinstance(value, str):
            continue
        number = MessageWriter()
        number.double(_MAP_VALUE, value, always=True)
        request.message(_REQUEST.LOSS_FN_CONFIG_FIELD_NUMBER, _map_entry(name, number, inline=True))
    request.varint(_REQUEST.FORWARD_ONLY_FIELD_NUMBER, int(forward_only))
    for name, value in config.items():
        setting = MessageWriter()  # a oneof member: written even at its default
        if isinstance(value, str):
            setting.string(pb.LossConfigValue.TEXT_FIELD_NUMBER, value, always=True)
        else:
            setting.double(pb.LossConfigValue.NUMBER_FIELD_NUMBER, value, always=True)
        request.message(_REQUEST.LOSS_FN_CONFIG_V2_FIELD_NUMBER, _map_entry(name, setting))
    return request.parts()


def _map_entry(key: str, value: MessageWriter, *, inline: bool = False) -> MessageWriter:
    """A map entry; ``inline`` when ``value`` already holds the value field (scalar values)."""
    entry = MessageWriter()
    entry.string(_MAP_KEY, key, always=True)
    if inline:
        entry.extend(value)
    else:
        entry.message(_MAP_VALUE, value)
    return entry


def _datum_writer(datum: Datum, index: int) -> MessageWriter:
    writer = MessageWriter()
    for chunk in datum.model_input.chunks:
        if type(chunk) is EncodedTextChunk:  # the hot case, written in one go (the same bytes as _chunk_writer's)
            held = chunk.held_array()
            tokens = pack_int32(chunk.tokens if held is None else held, f"the tokens of datum {index}", copy=False)
            writer.nested(_TEXT_CHUNK, field_header(_TOKENS, len(tokens)) if tokens else b"", tokens)
        else:
            writer.message(pb.Datum.MODEL_INPUT_FIELD_NUMBER, _chunk_writer(chunk, index))
    for name, tensor in datum.loss_fn_inputs.items():
        what = f"loss input {name!r} of datum {index}"
        if not tensor.is_sparse:  # dense, the hot case: _tensor_writer's bytes in a map entry, in one go
            held = tensor.held_array()
            dense = pack(tensor.data if held is None else held, tensor.dtype, what, copy=False)  # held: a view
            head = field_header(pb.Tensor.DENSE_FIELD_NUMBER, len(dense))  # a oneof member: always written
            tail = varint_field(pb.Tensor.DTYPE_FIELD_NUMBER, proto_dtype_of(tensor.dtype))
            if tensor.shape is not None:
                tail += packed_int64_field(pb.Tensor.SHAPE_FIELD_NUMBER, tensor.shape)
            key = _map_key(name)
            entry_head = key + field_header(_MAP_VALUE, len(head) + len(dense) + len(tail)) + head
            writer.nested(_LOSS_INPUT, entry_head, dense, tail)
        else:
            writer.message(pb.Datum.LOSS_FN_INPUTS_FIELD_NUMBER, _map_entry(name, _tensor_writer(tensor, what)))
    return writer


_TEXT_CHUNK = (pb.Datum.MODEL_INPUT_FIELD_NUMBER, pb.Chunk.ENCODED_TEXT_FIELD_NUMBER)
_TOKENS = pb.EncodedTextChunk.TOKENS_FIELD_NUMBER
_LOSS_INPUT = (pb.Datum.LOSS_FN_INPUTS_FIELD_NUMBER,)


@functools.lru_cache(maxsize=256)  # loss input names repeat in every datum
def _map_key(key: str) -> bytes:
    """A map entry's key field (written even when empty), as :func:`_map_entry` writes it."""
    entry = MessageWriter()
    entry.string(_MAP_KEY, key, always=True)
    return entry.to_bytes()


def _chunk_writer(chunk: Any, datum_index: int) -> MessageWriter:
    kind = MessageWriter()
    writer = MessageWriter()
    if isinstance(chunk, EncodedTextChunk):
        held = chunk.held_array()
        tokens = pack_int32(chunk.tokens if held is None else held, f"the tokens of datum {datum_index}", copy=False)
        kind.data(pb.EncodedTextChunk.TOKENS_FIELD_NUMBER, tokens)
        writer.message(pb.Chunk.ENCODED_TEXT_FIELD_NUMBER, kind)
    elif isinstance(chunk, ImageChunk):
        kind.data(pb.ImageChunk.DATA_FIELD_NUMBER, chunk.data)
        kind.string(pb.ImageChunk.FORMAT_FIELD_NUMBER, chunk.format)
        if chunk.expected_tokens is not None:  # an optional field: present even when 0
            kind.varint(pb.ImageChunk.EXPECTED_TOKENS_FIELD_NUMBER, check_int32(chunk.expected_tokens,
                                                                                "expected_tokens"), always=True)
        writer.message(pb.Chunk.IMAGE_FIELD_NUMBER, kind)
    elif isinstance(chunk, ImageAssetPointerChunk):
        raise InvalidInputError("protocol 0.38 cannot send image_asset_pointer chunks (it has no wire form "
                                "for them): send the image bytes as an ImageChunk")
    else:  # pragma: no cover - the domain union has no other kinds
        raise InvalidInputError(f"unsupported model input chunk {type(chunk).__name__}")
    return writer


def _tensor_writer(tensor: TensorData, what: str) -> MessageWriter:
    writer = MessageWriter()
    csr = tensor.csr_arrays()
    if csr is None:
        held = tensor.held_array()
        dense = pack(tensor.data if held is None else held, tensor.dtype, what, copy=False)  # held: a view
        writer.data(pb.Tensor.DENSE_FIELD_NUMBER, dense, always=True)  # a oneof member
    else:
        values, crow, col = csr
        sparse = MessageWriter()
        sparse.data(pb.SparseCsr.VALUES_FIELD_NUMBER, pack(values, tensor.dtype, what, copy=False))
        sparse.data(pb.SparseCsr.CROW_INDICES_FIELD_NUMBER, pack(crow, "int64", f"{what} row pointers", copy=False))
        sparse.data(pb.SparseCsr.COL_INDICES_FIELD_NUMBER, pack(col, "int64", f"{what} columns", copy=False))
        writer.message(pb.Tensor.SPARSE_CSR_FIELD_NUMBER, sparse)  # a oneof member: present even when empty
    writer.varint(pb.Tensor.DTYPE_FIELD_NUMBER, proto_dtype_of(tensor.dtype))
    if tensor.shape is not None:
        writer.packed_int64(pb.Tensor.SHAPE_FIELD_NUMBER, tensor.shape)
    return writer


# ---------------------------------------------------------------------------------------------------
# forward_backward request: message -> domain (server)

def _decompress(content: bytes, content_encoding: str | None, limit: int) -> bytes:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return content
    if encoding != "zstd":
        raise InvalidInputError(f"unsupported Content-Encoding {content_encoding!r} (0.38 compresses with zstd)")
    try:
        declared = zstandard.frame_content_size(content)
        if declared > limit:
            raise InvalidInputError(f"the compressed body would inflate to {declared} bytes (limit {limit})")
        # Without a declared size, max_output_size bounds the output instead.
        return zstandard.ZstdDecompressor().decompress(content, max_output_size=limit if declared < 0 else 0)
    except zstandard.ZstdError as error:
        raise InvalidInputError(f"the body is not a valid zstd frame within {limit} bytes: {error}") from None


def _call_from_message(message: pb.ForwardBackwardRequest) -> ForwardBackwardCall:
    data = [_datum_from_message(datum, index) for index, datum in enumerate(message.data)]
    return _call(data, message.model_id, message.seq_id, message.loss_fn, message, message.forward_only)


def _call_from_slices(request: RequestSlices) -> ForwardBackwardCall:
    data = [_datum_from_message(datum, index) if isinstance(datum, pb.Datum) else _datum_from_slices(datum, index)
            for index, datum in enumerate(request.data)]
    return _call(data, request.model_id, request.seq_id, request.loss_fn, request.config, request.forward_only)


def _call(data: list[Datum], model_id: str, seq_id: int, loss_fn: str, config: pb.ForwardBackwardRequest | None,
          forward_only: bool) -> ForwardBackwardCall:
    try:
        # The loss and its settings are validated on their own; the datums were checked as they were read,
        # so the input is assembled without validating them again (hundreds of microseconds per datum).
        checked = ForwardBackwardInput(data=[], loss_fn=loss_fn,
                                       loss_fn_config=None if config is None else _loss_fn_config(config))
    except pydantic.ValidationError as invalid:
        raise WireFormatError(_first_problem(invalid)) from None
    fb_input = ForwardBackwardInput.model_construct(data=data, loss_fn=checked.loss_fn,
                                                    loss_fn_config=checked.loss_fn_config)
    return ForwardBackwardCall(model_id=model_id, seq_id=seq_id, input=fb_input, forward_only=forward_only)


def _loss_fn_config(message: pb.ForwardBackwardRequest) -> dict[str, float | str] | None:
    if message.loss_fn_config_v2:  # preferred when set: it is the newer of the two maps
        config: dict[str, float | str] = {}
        for name, value in message.loss_fn_config_v2.items():
            kind = value.WhichOneof("value")
            if kind is None:
                raise WireFormatError(f"loss_fn_config {name!r} holds neither a number nor text")
            config[name] = value.number if kind == "number" else value.text
        return config
    if message.loss_fn_config:
        return dict(message.loss_fn_config)
    return None


def _datum_from_message(message: pb.Datum, index: int) -> Datum:
    chunks = [_chunk_from_message(chunk, index) for chunk in message.model_input]
    inputs = {name: _tensor_from_message(tensor, f"loss input {name!r} of datum {index}")
              for name, tensor in message.loss_fn_inputs.items()}
    # model_input_spans / loss_fn_input_spans: provenance only (see the module docstring).
    return _datum(chunks, inputs)


def _datum_from_slices(datum: DatumSlices, index: int) -> Datum:
    """A datum read in place: its arrays are views of the request's bytes (see :mod:`.request_reader`)."""
    chunks: list[EncodedTextChunk | ImageChunk] = [
        EncodedTextChunk.from_array(unpack(run, INT32, f"the tokens of datum {index}")) for run in datum.token_runs]
    inputs = {name: _dense_tensor(tensor.dense, tensor.dtype, tensor.shape or None,
                                  f"loss input {name!r} of datum {index}")
              for name, tensor in datum.loss_fn_inputs.items()}
    return _datum(chunks, inputs)


def _datum(chunks: Sequence[EncodedTextChunk | ImageChunk], inputs: dict[str, TensorData]) -> Datum:
    """A datum of checked parts, not validated again: each chunk and tensor was made valid by the readers
    above (a tensor's values fit its shape), which is all a Datum's validation checks of them."""
    return Datum.model_construct(model_input=ModelInput.model_construct(chunks=list(chunks)), loss_fn_inputs=inputs)


def _chunk_from_message(message: pb.Chunk, datum_index: int) -> EncodedTextChunk | ImageChunk:
    kind = message.WhichOneof("chunk")
    if kind == "encoded_text":
        tokens = unpack(message.encoded_text.tokens, INT32, f"the tokens of datum {datum_index}")
        return EncodedTextChunk.from_array(tokens)  # a view of the message's bytes; the list if read
    if kind == "image":
        image = message.image
        if image.HasField("override_dimensions"):
            raise WireFormatError(f"datum {datum_index}: image override_dimensions are not supported")
        expected = image.expected_tokens if image.HasField("expected_tokens") else None
        try:
            return ImageChunk(data=image.data, format=image.format,
                              expected_tokens=expected)
        except pydantic.ValidationError as invalid:
            raise WireFormatError(f"datum {datum_index}: {_first_problem(invalid)}") from None
    if kind == "dmel":
        raise WireFormatError(f"datum {datum_index}: audio (dmel) chunks are not supported")
    raise WireFormatError(f"datum {datum_index} has an empty model input chunk")


def _tensor_from_message(message: pb.Tensor, what: str) -> TensorData:
    shape = list(message.shape) or None
    if message.WhichOneof("encoding") == "sparse_csr":
        dtype = domain_dtype_of(message.dtype, what)
        sparse = message.sparse_csr
        values = unpack_proto_dtype(sparse.values, message.dtype, what)
        crow = unpack(sparse.crow_indices, INT64, f"{what} row pointers")
        col = unpack(sparse.col_indices, INT64, f"{what} columns")
        problem = check_csr(values.size, crow, col, shape)
        if problem is not None:
            raise WireFormatError(f"{what}: {problem}")
        assert shape is not None  # check_csr: a 2-D shape
        return TensorData.from_csr_arrays(values, crow, col, dtype, shape)  # views of the message's bytes
    return _dense_tensor(message.dense, message.dtype, shape, what)


def _dense_tensor(content: bytes | memoryview, proto_dtype: int, shape: list[int] | None, what: str) -> TensorData:
    dtype = domain_dtype_of(proto_dtype, what)
    values = unpack_proto_dtype(content, proto_dtype, what)
    if shape is not None and (any(d < 0 for d in shape) or math.prod(shape) != values.size):
        raise WireFormatError(f"{what}: shape {shape} does not hold {values.size} values")
    # Checked above. A read-only view of the message's bytes (widened ones are a new array).
    return TensorData.from_flat_array(values, dtype, shape)


def _first_problem(error: pydantic.ValidationError) -> str:
    problem = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in problem["loc"])
    return f"{location}: {problem['msg']}" if location else str(problem["msg"])


# ---------------------------------------------------------------------------------------------------
# forward_backward result: domain -> message (server)

def _output_message(output: ForwardBackwardOutput) -> pb.ForwardBackwardOutput:
    message = pb.ForwardBackwardOutput(loss_fn_output_type=output.loss_fn_output_type)
    for name, value in output.metrics.items():
        message.metrics[name] = value
    datums = output.loss_fn_outputs
    if datums:
        names = set(datums[0])
        if any(set(datum) != names for datum in datums):
            raise InvalidInputError("every datum of a forward_backward result must have the same output names")
    # Datums whose outputs share dtypes and trailing shapes go in one record; a ragged result (say,
    # 2-D outputs of different widths) becomes several records, in datum order.
    start = 0
    while start < len(datums):
        signature = _record_signature(datums[start])
        end = start + 1
        while end < len(datums) and _record_signature(datums[end]) == signature:
            end += 1
        _write_record(message.loss_fn_outputs.add(), datums[start:end])
        start = end
    return message


def _shape_of(tensor: TensorData) -> list[int]:
    return tensor.shape if tensor.shape is not None else [tensor.size]


def _record_signature(datum: dict[str, TensorData]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(sorted((name, tensor.dtype, tuple(_shape_of(tensor)[1:])) for name, tensor in datum.items()))


def _write_record(message: pb.ArrayRecord, datums: list[dict[str, TensorData]]) -> None:
    message.num_datums = len(datums)
    for name, first in datums[0].items():
        dtype = first.dtype
        wire_dtype = FLOAT32 if dtype == "float32" else INT64
        arrays = [np.asarray(datum[name].to_numpy(), dtype=wire_dtype) for datum in datums]
        sizes = np.fromiter((array.nbytes for array in arrays), dtype=INT64, count=len(arrays))
        offsets = np.zeros(len(arrays) + 1, dtype=INT64)
        np.cumsum(sizes, out=offsets[1:])
        batched = message.fields[name]
        batched.dtype = proto_dtype_of(dtype)
        batched.data = b"".join(array.tobytes() for array in arrays)
        batched.offsets = offsets.tobytes()
        batched.trailing_shape.extend(_shape_of(first)[1:])


# ---------------------------------------------------------------------------------------------------
# forward_backward result: message -> domain (client)

def _output_from_message(message: pb.ForwardBackwardOutput) -> ForwardBackwardOutput:
    metrics = dict(message.metrics)
    if not message.loss_fn_outputs:
        return ForwardBackwardOutput(loss_fn_output_type=message.loss_fn_output_type or "ArrayRecord",
                                     loss_fn_outputs=[], metrics=metrics)
    outputs: list[dict[str, TensorData]] = []
    for record in message.loss_fn_outputs:
        outputs.extend(_record_datums(record))
    # The service may qualify the type ("module:Name"); the JSON wire always carried the bare name.
    # model_construct: every tensor was checked while split; validating them again costs a third of the decode.
    return ForwardBackwardOutput.model_construct(loss_fn_output_type=message.loss_fn_output_type.rsplit(":", 1)[-1],
                                                 loss_fn_outputs=outputs, metrics=metrics)


def _record_datums(record: pb.ArrayRecord) -> list[dict[str, TensorData]]:
    fields = {name: _split_batched(batched, f"output {name!r}") for name, batched in record.fields.items()}
    count = record.num_datums
    if count == 0 and fields:  # writers that predate num_datums: the offsets say how many
        count = len(next(iter(fields.values())))
    for name, parts in fields.items():
        if len(parts) != count:
            raise WireFormatError(f"output {name!r} has {len(parts)} datums, the record {count}")
    return [{name: parts[i] for name, parts in fields.items()} for i in range(count)]


def _split_batched(batched: pb.BatchedTensor, what: str) -> list[TensorData]:
    raw_dtype = raw_dtype_of(batched.dtype, what)
    dtype = domain_dtype_of(batched.dtype, what)
    itemsize = raw_dtype.itemsize
    offsets = unpack(batched.offsets, INT64, f"{what} offsets")
    data = batched.data  # once: each read of a bytes field copies it out of the message
    raw = unpack(data, raw_dtype, what)
    if offsets.size == 0:
        return []
    if (offsets[0] < 0 or offsets[-1] > len(data) or np.any(np.diff(offsets) < 0)
            or np.any(offsets % itemsize)):
        raise WireFormatError(f"{what} has offsets that do not slice its {len(data)} bytes")
    values = widen(raw, batched.dtype)
    bounds = (offsets // itemsize).tolist()
    trailing = list(batched.trailing_shape)
    per_row = math.prod(trailing)
    tensors = []
    for start, end in itertools.pairwise(bounds):
        part: npt.NDArray[Any] = values[start:end]
        if per_row == 0 or part.size % per_row:
            if part.size:
                raise WireFormatError(f"{what}: {part.size} values do not fill rows of shape {trailing}")
            leading = 0
        else:
            leading = part.size // per_row
        tensors.append(TensorData.from_flat_array(part, dtype, [leading, *trailing]))
    return tensors


# ---------------------------------------------------------------------------------------------------
# sample result: domain -> message (server)

def _sample_response_message(response: SampleResponse) -> pb.SampleResponse:
    """The message of a domain response, through :func:`.array_results.sample_message` (held arrays as they are)."""
    sequences = []
    for sequence in response.sequences:
        topk = sequence.topk_logprobs_np if sequence.topk_logprobs is not None else None
        sequences.append(SequenceArrays(sequence.stop_reason, sequence.tokens_np, sequence.logprobs_np,
                                        None if topk is None else (topk.token_ids, topk.logprobs)))
    prompt_topk = None
    if response.topk_prompt_logprobs is not None:
        prompt_topk = topk_matrices(response.topk_prompt_logprobs)
    target = None
    if response.target_prompt_logprobs is not None:
        target = _target_arrays(response.target_prompt_logprobs)
    alt = None
    if response.prompt_alt_tokens is not None:
        alt = (response.prompt_alt_tokens.tokens.to_numpy(), response.prompt_alt_tokens.logprobs.to_numpy())
    return sample_message(sequences, prompt_logprobs_np=response.prompt_logprobs_np,
                          topk_prompt_logprobs=prompt_topk, target=target, alt_tokens=alt,
                          prompt_cache_hit_tokens=response.prompt_cache_hit_tokens)


def _target_arrays(tensor: TensorData) -> TargetArrays:
    shape = list(tensor.shape) if tensor.shape is not None else [tensor.size]
    csr = tensor.csr_arrays()
    if csr is not None:
        values, crow, col = csr
        return TargetArrays(values, shape, crow, col)
    return TargetArrays(tensor.to_numpy().ravel(), shape)


# ---------------------------------------------------------------------------------------------------
# sample result: message -> domain (client)

def _sample_response_from_message(message: pb.SampleResponse) -> SampleResponse:
    sequences = []
    for index, sequence in enumerate(message.sequences):
        stop_reason = _STOP_REASONS.get(sequence.stop_reason)
        if stop_reason is None:
            raise WireFormatError(f"sequence {index} has an unknown stop reason {sequence.stop_reason}")
        # Read-only views of the message's bytes; the lists are made if the caller reads them.
        tokens = unpack(sequence.tokens, INT32, f"the tokens of sequence {index}")
        logprobs = None
        if sequence.HasField("logprobs"):
            logprobs = unpack(sequence.logprobs, FLOAT32, f"the logprobs of sequence {index}")
            if logprobs.size != tokens.size:
                raise WireFormatError(f"sequence {index} has {tokens.size} tokens but {logprobs.size} logprobs")
        sequence_topk = None
        if sequence.HasField("topk_sampled_logprobs"):
            what = f"the top-k logprobs of sequence {index}"
            sequence_topk = _topk_matrices(sequence.topk_sampled_logprobs, what)
            if sequence_topk is not None and sequence_topk.token_ids.shape[0] != tokens.size:
                raise WireFormatError(f"{what} has {sequence_topk.token_ids.shape[0]} rows for {tokens.size} tokens")
        sequences.append(SampledSequence.from_arrays(stop_reason, tokens, logprobs, topk=sequence_topk))
    prompt = None
    if message.HasField("prompt_logprobs"):  # NaN where a position has none; the list shows None there
        prompt = unpack(message.prompt_logprobs, FLOAT32, "prompt_logprobs")
    topk = None
    if message.HasField("topk_prompt_logprobs"):
        topk = _topk_rows(message.topk_prompt_logprobs, "topk_prompt_logprobs")
    target = None
    if message.HasField("target_prompt_logprobs"):
        target = _tensor_from_message(message.target_prompt_logprobs, "target_prompt_logprobs")
    alt = None
    if message.HasField("prompt_alt_tokens"):
        alt_tokens = _tensor_from_message(message.prompt_alt_tokens.tokens, "prompt_alt_tokens.tokens")
        alt_logprobs = _tensor_from_message(message.prompt_alt_tokens.logprobs, "prompt_alt_tokens.logprobs")
        if alt_tokens.shape != alt_logprobs.shape:
            raise WireFormatError(f"prompt_alt_tokens: tokens of shape {alt_tokens.shape}, logprobs of shape "
                                  f"{alt_logprobs.shape}")
        alt = PromptAltTokens(tokens=alt_tokens, logprobs=alt_logprobs)
    return SampleResponse.from_arrays(sequences, prompt, topk, target_prompt_logprobs=target, prompt_alt_tokens=alt,
                                      prompt_cache_hit_tokens=message.prompt_cache_hit_tokens)


def _topk_matrices(message: pb.TopkLogprobs, what: str) -> TopkLogprobs | None:
    """The two ``(length, k)`` matrices (read-only views of the message's bytes), or None when empty (as the
    official reader: nothing was computed)."""
    length, k = message.length, message.k
    if length == 0 or k == 0:
        return None
    token_ids = unpack(message.token_ids, INT32, f"{what} token ids")
    logprobs = unpack(message.logprobs, FLOAT32, f"{what} logprobs")
    if token_ids.size != length * k or logprobs.size != length * k:
        raise WireFormatError(f"{what} holds {token_ids.size} ids and {logprobs.size} logprobs, "
                              f"not {length} x {k}")
    return TopkLogprobs(token_ids=token_ids.reshape(length, k), logprobs=logprobs.reshape(length, k))


def _topk_rows(message: pb.TopkLogprobs, what: str) -> list[list[tuple[int, float]] | None] | None:
    length, k = message.length, message.k
    if length == 0 or k == 0:
        return None  # as the official reader: nothing was computed
    token_ids = unpack(message.token_ids, INT32, f"{what} token ids")
    logprobs = unpack(message.logprobs, FLOAT32, f"{what} logprobs")
    if token_ids.size != length * k or logprobs.size != length * k:
        raise WireFormatError(f"{what} holds {token_ids.size} ids and {logprobs.size} logprobs, "
                              f"not {length} x {k}")
    token_ids = token_ids.reshape(length, k)
    logprobs = logprobs.reshape(length, k)
    filled = ~((token_ids == 0) & (logprobs == np.float32(TOPK_EMPTY_LOGPROB)))
    # A row is "nothing here" when its first slot is empty; otherwise trailing empty slots are cut.
    widths = k - np.argmax(filled[:, ::-1], axis=1)
    id_rows = token_ids.tolist()
    logprob_rows = logprobs.tolist()
    first_filled = filled[:, 0].tolist()
    rows: list[list[tuple[int, float]] | None] = []
    for i, width in enumerate(widths.tolist()):
        rows.append(list(zip(id_rows[i][:width], logprob_rows[i][:width], strict=True)) if first_filled[i] else None)
    return rows


# ---------------------------------------------------------------------------------------------------
# shared

def _parse_result(message: Any, content: bytes, content_type: str | None, name: str) -> Any:
    if media_type(content_type) != CONTENT_TYPE_PROTOBUF:
        raise _bad_result(name, f"the server answered {content_type or 'an untyped body'}; protocol 0.38 reads "
                                f"this result only as {CONTENT_TYPE_PROTOBUF} (a server that predates 0.25?)")
    try:
        message.ParseFromString(content)
    except DecodeError:
        raise _bad_result(name, f"{len(content)} bytes that do not parse as {name}") from None
    return message


def _bad_result(name: str, detail: str) -> APIResponseValidationError:
    return APIResponseValidationError(f"invalid protobuf {name} result: {detail}")
