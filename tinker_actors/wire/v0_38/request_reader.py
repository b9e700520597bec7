"""A forward_backward request read in place: where its arrays lie in the body, without copying them.

Why: protobuf's parser copies every ``bytes`` field twice on the way to numpy (into its arena, then
into a new ``bytes`` object on each read); for a 4 MB request of 128 datums that is most of the
service's decoding time, much of it spent faulting in fresh memory. This reader walks the message's
wire format and hands back views of the body (``memoryview`` slices) for the token runs and dense
tensors, which ``np.frombuffer`` reads without a copy.

It reads only the plain, common form of the message: the fields of ``tinker.proto`` with their own
wire types, each singular field at most once, text chunks, dense tensors with a packed shape, map
entries holding both their key and their value. A datum in any other form (images, sparse tensors,
provenance spans, a field written twice, ...) is parsed by protobuf on its own, and anything else
unusual in the message (an unknown field, a malformed length, text that is not UTF-8) makes
:func:`scan_forward_backward` return None: the caller then parses the whole body with protobuf, so
what is accepted, refused and how it reads is protobuf's own answer in every case this reader does not
take, and the same answer in those it does (tests/wire/test_request_reader.py compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from tinker_actors.wire.v0_38 import tinker_pb2 as pb

__all__ = ["DatumSlices", "RequestSlices", "TensorSlices", "scan_forward_backward"]

# Wire types
_VARINT = 0
_LEN = 2

# Field numbers (tinker.proto)
_REQ_MODEL_ID, _REQ_SEQ_ID, _REQ_DATA, _REQ_LOSS_FN = 1, 2, 3, 4
_REQ_CONFIG, _REQ_FORWARD_ONLY, _REQ_CONFIG_V2 = 5, 6, 7
_DATUM_MODEL_INPUT, _DATUM_LOSS_FN_INPUTS = 1, 2
_CHUNK_ENCODED_TEXT = 1
_TEXT_TOKENS = 1
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_TENSOR_DENSE, _TENSOR_DTYPE, _TENSOR_SHAPE = 1, 3, 4

_INT32_LIMIT = 2**31
_UINT64_MASK = 2**64 - 1


class _Unusual(Exception):
    """The bytes are not in the plain form this reader takes (or not valid at all)."""


@dataclass(frozen=True, slots=True)
class TensorSlices:
    """A dense tensor: its packed values (a view of the body), its wire dtype and its shape (may be empty)."""

    dense: memoryview
    dtype: int
    shape: list[int]


@dataclass(frozen=True, slots=True)
class DatumSlices:
    """A datum of text chunks (each a view of its packed int32 ids) and dense loss inputs."""

    token_runs: list[memoryview]
    loss_fn_inputs: dict[str, TensorSlices]


@dataclass(frozen=True, slots=True)
class RequestSlices:
    """A ``ForwardBackwardRequest``: each datum read in place, or parsed by protobuf when unusual;
    ``config`` holds the request's loss settings maps (parsed by protobuf), when it has any."""

    model_id: str
    seq_id: int
    loss_fn: str
    forward_only: bool
    data: list[DatumSlices | pb.Datum]
    config: pb.ForwardBackwardRequest | None


def scan_forward_backward(raw: bytes) -> RequestSlices | None:
    """The request in ``raw`` read in place, or None when protobuf's parser must read it (see the module
    docstring). Never raises for malformed bytes: those are None too, and protobuf names the problem."""
    try:
        return _scan_request(raw)
    except (_Unusual, DecodeError, IndexError, UnicodeDecodeError):
        return None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` (as an unsigned 64-bit value) and the position after it."""
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    value = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _UINT64_MASK:  # bits past 64: leave the verdict to protobuf
                raise _Unusual
            return value, pos
        shift += 7
        if shift >= 70:  # longer than any varint
            raise _Unusual


def _length_end(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A length-delimited field's payload (start, end), within ``end``."""
    length, start = _varint(buf, pos)
    stop = start + length
    if stop > end:
        raise _Unusual
    return start, stop


def _scan_request(raw: bytes) -> RequestSlices:
    view = memoryview(raw)
    end = len(raw)
    pos = 0
    singular: dict[int, int | str] = {}
    data: list[DatumSlices | pb.Datum] = []
    config_parts: list[bytes] = []
    while pos < end:
        tag_start = pos
        tag, pos = _varint(raw, pos)
        number, wire = tag >> 3, tag & 7
        if number == _REQ_DATA and wire == _LEN:
            start, pos = _length_end(raw, pos, end)
            data.append(_scan_datum(raw, view, start, pos))
        elif number in (_REQ_MODEL_ID, _REQ_LOSS_FN) and wire == _LEN and number not in singular:
            start, pos = _length_end(raw, pos, end)
            singular[number] = raw[start:pos].decode("utf-8")
        elif number in (_REQ_SEQ_ID, _REQ_FORWARD_ONLY) and wire == _VARINT and number not in singular:
            singular[number], pos = _varint(raw, pos)
        elif number in (_REQ_CONFIG, _REQ_CONFIG_V2) and wire == _LEN:
            _, pos = _length_end(raw, pos, end)
            config_parts.append(raw[tag_start:pos])
        else:
            raise _Unusual
    config = pb.ForwardBackwardRequest.FromString(b"".join(config_parts)) if config_parts else None
    seq_id = int(singular.get(_REQ_SEQ_ID, 0)) & 0xFFFFFFFF  # an int32: the varint's low 32 bits, signed
    return RequestSlices(model_id=str(singular.get(_REQ_MODEL_ID, "")),
                         seq_id=seq_id - 2**32 if seq_id >= _INT32_LIMIT else seq_id,
                         loss_fn=str(singular.get(_REQ_LOSS_FN, "")),
                         forward_only=bool(singular.get(_REQ_FORWARD_ONLY, 0)),
                         data=data, config=config)


def _scan_datum(raw: bytes, view: memoryview, pos: int, end: int) -> DatumSlices | pb.Datum:
    start = pos
    try:
        runs: list[memoryview] = []
        inputs: dict[str, TensorSlices] = {}
        while pos < end:
            tag, pos = _varint(raw, pos)
            if tag == (_DATUM_MODEL_INPUT << 3 | _LEN):
                chunk_start, pos = _length_end(raw, pos, end)
                runs.append(_scan_text_chunk(raw, view, chunk_start, pos))
            elif tag == (_DATUM_LOSS_FN_INPUTS << 3 | _LEN):
                entry_start, pos = _length_end(raw, pos, end)
                key, tensor = _scan_entry(raw, view, entry_start, pos)
                if key in inputs:
                    raise _Unusual
                inputs[key] = tensor
            else:
                raise _Unusual
        if pos != end:  # the last field ran past the datum
            raise _Unusual
        return DatumSlices(runs, inputs)
    except (_Unusual, IndexError, UnicodeDecodeError):
        return pb.Datum.FromString(raw[start:end])  # an unusual datum: protobuf reads it (DecodeError if bad)


def _scan_text_chunk(raw: bytes, view: memoryview, pos: int, end: int) -> memoryview:
    """A ``Chunk`` holding exactly one ``encoded_text`` with exactly one ``tokens`` field."""
    tag, pos = _varint(raw, pos)
    if tag != (_CHUNK_ENCODED_TEXT << 3 | _LEN):
        raise _Unusual
    text_start, pos = _length_end(raw, pos, end)
    if pos != end:
        raise _Unusual
    tag, text_pos = _varint(raw, text_start)
    if tag != (_TEXT_TOKENS << 3 | _LEN):
        raise _Unusual
    tokens_start, tokens_end = _length_end(raw, text_pos, end)
    if tokens_end != end:
        raise _Unusual
    return view[tokens_start:tokens_end]


def _scan_entry(raw: bytes, view: memoryview, pos: int, end: int) -> tuple[str, TensorSlices]:
    """A ``loss_fn_inputs`` map entry: its key, then its value (a dense Tensor), each once."""
    tag, pos = _varint(raw, pos)
    if tag != (_ENTRY_KEY << 3 | _LEN):
        raise _Unusual
    key_start, pos = _length_end(raw, pos, end)
    key = raw[key_start:pos].decode("utf-8")
    tag, pos = _varint(raw, pos)
    if tag != (_ENTRY_VALUE << 3 | _LEN):
        raise _Unusual
    tensor_start, pos = _length_end(raw, pos, end)
    if pos != end:
        raise _Unusual
    return key, _scan_tensor(raw, view, tensor_start, end)


def _scan_tensor(raw: bytes, view: memoryview, pos: int, end: int) -> TensorSlices:
    dense: memoryview | None = None
    dtype: int | None = None
    shape: list[int] | None = None
    while pos < end:
        tag, pos = _varint(raw, pos)
        if tag == (_TENSOR_DENSE << 3 | _LEN) and dense is None:
            start, pos = _length_end(raw, pos, end)
            dense = view[start:pos]
        elif tag == (_TENSOR_DTYPE << 3 | _VARINT) and dtype is None:
            dtype, pos = _varint(raw, pos)
            if dtype >= _INT32_LIMIT:  # an enum is an int32: leave the wrap-around to protobuf
                raise _Unusual
        elif tag == (_TENSOR_SHAPE << 3 | _LEN) and shape is None:
            start, pos = _length_end(raw, pos, end)
            shape = []
            while start < pos:
                dim, start = _varint(raw, start)
                shape.append(dim - 2**64 if dim >= 2**63 else dim)
            if start != pos:
                raise _Unusual
        else:
            raise _Unusual
    if pos != end:  # the last field ran past the tensor
        raise _Unusual
    return TensorSlices(view[0:0] if dense is None else dense, 0 if dtype is None else dtype, shape or [])
