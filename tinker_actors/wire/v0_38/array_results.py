"""The service's 0.38 forward_backward and sample results written straight from numpy arrays.

:meth:`ProtobufCodec.encode_forward_backward_output` takes the domain ``ForwardBackwardOutput``,
whose tensors hold Python lists; a service that computed numpy arrays would turn each array into a
list only for the codec to turn it back. This writes the same message from the arrays: for a
256 x 2048-token result, milliseconds instead of a fifth of a second. The message is the codec's
(same records, dtypes, offsets and shapes), so the client side reads both alike.

:func:`encode_sample_arrays` does the same for a ``SampleResponse``: the sampler's arrays (top-k
matrices, logprobs of chosen prompt tokens, alternative prompt tokens) go to the packed fields without
a pydantic model or a Python list in between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.wire.codec import CONTENT_TYPE_PROTOBUF, EncodedBody
from tinker_actors.wire.v0_38 import tinker_pb2 as pb
from tinker_actors.wire.v0_38.arrays import FLOAT32, INT64, pack, pack_int32
from tinker_actors.wire.v0_38.writer import MessageWriter

__all__ = ["SequenceArrays", "TargetArrays", "encode_forward_backward_arrays", "encode_sample_arrays",
           "sample_message", "topk_matrices"]

# Field numbers of the forward_backward result (tinker.proto).
_OUTPUT_TYPE, _OUTPUT_RECORDS, _OUTPUT_METRICS = 1, 2, 3
_RECORD_FIELDS, _RECORD_NUM_DATUMS = 2, 3
_BATCHED_DATA, _BATCHED_OFFSETS, _BATCHED_DTYPE, _BATCHED_TRAILING_SHAPE = 1, 2, 3, 4
_ENTRY_KEY, _ENTRY_VALUE = 1, 2  # of a map entry
_STOP_REASONS = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}
_TOPK_EMPTY_LOGPROB = -99999.0  # an empty top-k cell: token 0 with this logprob (the official rule)

Outputs = Sequence[Mapping[str, npt.NDArray[Any]]]


def _wire_array(value: npt.ArrayLike, what: str) -> npt.NDArray[Any]:
    """``value`` as the wire holds it (the domain's dtype rule: floating -> float32, integer -> int64),
    at least one-dimensional."""
    array = np.atleast_1d(np.asarray(value))
    if array.dtype.kind == "f":
        return array.astype(FLOAT32, copy=False)
    if array.dtype.kind in ("i", "u"):
        return array.astype(INT64, copy=False)
    raise InvalidInputError(f"{what} has dtype {array.dtype}: results are floating point or integer")


def encode_forward_backward_arrays(outputs: Outputs, metrics: Mapping[str, float],
                                   loss_fn_output_type: str) -> EncodedBody:
    """A ``ForwardBackwardOutput`` message of one output mapping per datum (name -> array)."""
    datums = [{name: _wire_array(value, f"output {name!r} of datum {index}") for name, value in out.items()}
              for index, out in enumerate(outputs)]
    if datums and any(set(datum) != set(datums[0]) for datum in datums):
        raise InvalidInputError("every datum of a forward_backward result must have the same output names")
    # Written directly (writer.py): each array's bytes are copied once, by the final join. Through the
    # generated classes they were copied four times (tobytes, a join, into the message, serialized).
    message = MessageWriter()
    message.string(_OUTPUT_TYPE, loss_fn_output_type)
    # As the codec: datums whose outputs share dtypes and trailing shapes share a record, in datum order.
    start = 0
    while start < len(datums):
        signature = _signature(datums[start])
        end = start + 1
        while end < len(datums) and _signature(datums[end]) == signature:
            end += 1
        message.message(_OUTPUT_RECORDS, _record(datums[start:end]))
        start = end
    for name, number in metrics.items():
        entry = MessageWriter()
        entry.string(_ENTRY_KEY, name, always=True)
        entry.double(_ENTRY_VALUE, float(number), always=True)
        message.message(_OUTPUT_METRICS, entry)
    return EncodedBody(message.to_bytes(), CONTENT_TYPE_PROTOBUF)


def _signature(datum: Mapping[str, npt.NDArray[Any]]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in datum.items()))


def _record(datums: list[dict[str, npt.NDArray[Any]]]) -> MessageWriter:
    """An ``ArrayRecord`` of ``datums`` (which share names, dtypes and trailing shapes)."""
    record = MessageWriter()
    for name, first in datums[0].items():
        arrays = [np.ascontiguousarray(datum[name]) for datum in datums]
        offsets = np.zeros(len(arrays) + 1, dtype=INT64)
        np.cumsum([array.nbytes for array in arrays], out=offsets[1:])
        batched = MessageWriter()
        batched.data_parts(_BATCHED_DATA, [array.data.cast("B") for array in arrays])
        batched.data(_BATCHED_OFFSETS, offsets.tobytes(), always=True)
        batched.varint(_BATCHED_DTYPE, pb.DTYPE_FLOAT32 if first.dtype == FLOAT32 else pb.DTYPE_INT64)
        batched.packed_int64(_BATCHED_TRAILING_SHAPE, list(first.shape[1:]))
        entry = MessageWriter()
        entry.string(_ENTRY_KEY, name, always=True)
        entry.message(_ENTRY_VALUE, batched)
        record.message(_RECORD_FIELDS, entry)
    record.varint(_RECORD_NUM_DATUMS, len(datums))
    return record


# ---- sample results --------------------------------------------------------------------------------

TopkMatrices = tuple[npt.NDArray[Any], npt.NDArray[Any]]
"""``(token_ids, logprobs)``, each ``[positions, k]``."""


@dataclass(frozen=True, slots=True)
class SequenceArrays:
    """One sampled sequence: its tokens and logprobs (lists or arrays), and its top-k matrices if asked."""

    stop_reason: Literal["stop", "length"]
    tokens: Sequence[int] | npt.NDArray[Any]
    logprobs: Sequence[float] | npt.NDArray[Any] | None
    topk: TopkMatrices | None = None


@dataclass(frozen=True, slots=True)
class TargetArrays:
    """``target_prompt_logprobs`` of a result: float32 ``values`` in the request's layout, dense (``shape``
    ``[rows, K]``, ``values`` row-major) or sparse (``crow`` / ``col`` the request's CSR indices)."""

    values: npt.NDArray[Any]
    shape: list[int]
    crow: npt.NDArray[Any] | None = None
    col: npt.NDArray[Any] | None = None


def encode_sample_arrays(sequences: Sequence[SequenceArrays], *,
                         prompt_logprobs: Sequence[float | None] | None = None,
                         topk_prompt_logprobs: TopkMatrices | None = None,
                         target: TargetArrays | None = None,
                         alt_tokens: TopkMatrices | None = None,
                         prompt_cache_hit_tokens: int = 0) -> EncodedBody:
    """A ``SampleResponse`` message. ``prompt_logprobs`` has None (sent as NaN) where a position has none;
    ``topk_prompt_logprobs`` is ``[prompt_length, k]`` with empty cells as the wire marks them (token 0,
    logprob -99999); ``alt_tokens`` is ``(tokens, logprobs)`` of ``[len(prompt) - 1, k]``."""
    message = sample_message(sequences, prompt_logprobs=prompt_logprobs, topk_prompt_logprobs=topk_prompt_logprobs,
                             target=target, alt_tokens=alt_tokens, prompt_cache_hit_tokens=prompt_cache_hit_tokens)
    return EncodedBody(message.SerializeToString(), CONTENT_TYPE_PROTOBUF)


def sample_message(sequences: Sequence[SequenceArrays], *,
                   prompt_logprobs: Sequence[float | None] | None = None,
                   prompt_logprobs_np: npt.NDArray[Any] | None = None,
                   topk_prompt_logprobs: TopkMatrices | None = None,
                   target: TargetArrays | None = None,
                   alt_tokens: TopkMatrices | None = None,
                   prompt_cache_hit_tokens: int = 0) -> pb.SampleResponse:
    """The message :func:`encode_sample_arrays` writes (``prompt_logprobs_np``: the prompt logprobs as floats
    with NaN where there is none, instead of ``prompt_logprobs``)."""
    message = pb.SampleResponse(prompt_cache_hit_tokens=prompt_cache_hit_tokens)
    for index, sequence in enumerate(sequences):
        written = message.sequences.add(stop_reason=_STOP_REASONS[sequence.stop_reason])
        written.tokens = pack_int32(sequence.tokens, f"the tokens of sequence {index}")
        if sequence.logprobs is not None:
            written.logprobs = pack(sequence.logprobs, "float32", f"the logprobs of sequence {index}")
        if sequence.topk is not None:
            _write_topk(written.topk_sampled_logprobs, *sequence.topk)
    if prompt_logprobs_np is not None:
        message.prompt_logprobs = np.ascontiguousarray(prompt_logprobs_np, dtype=FLOAT32).tobytes()
    elif prompt_logprobs is not None:
        message.prompt_logprobs = np.array([math.nan if value is None else value for value in prompt_logprobs],
                                           dtype=FLOAT32).tobytes()
    if topk_prompt_logprobs is not None:
        _write_topk(message.topk_prompt_logprobs, *topk_prompt_logprobs)
    if target is not None:
        _write_tensor(message.target_prompt_logprobs, target.values, pb.DTYPE_FLOAT32, target.shape,
                      target.crow, target.col)
    if alt_tokens is not None:
        tokens, logprobs = alt_tokens
        shape = list(tokens.shape)
        alt = message.prompt_alt_tokens
        alt.tokens.dense = pack_int32(tokens.ravel(), "prompt_alt_tokens")  # int32 ids, as the official server
        alt.tokens.dtype = pb.DTYPE_INT32
        alt.tokens.shape.extend(shape)
        _write_tensor(alt.logprobs, logprobs, pb.DTYPE_FLOAT32, shape)
    return message


def _write_topk(message: pb.TopkLogprobs, token_ids: npt.NDArray[Any], logprobs: npt.NDArray[Any]) -> None:
    length, k = token_ids.shape
    message.token_ids = pack_int32(np.ascontiguousarray(token_ids).ravel(), "top-k token ids")
    message.logprobs = np.ascontiguousarray(logprobs, dtype=FLOAT32).tobytes()
    message.k = k
    message.length = length


def _write_tensor(message: pb.Tensor, values: npt.NDArray[Any], dtype: pb.DType, shape: list[int],
                  crow: npt.NDArray[Any] | None = None, col: npt.NDArray[Any] | None = None) -> None:
    data = np.ascontiguousarray(values, dtype=FLOAT32).ravel().tobytes()
    if crow is None or col is None:
        message.dense = data
    else:
        message.sparse_csr.values = data
        message.sparse_csr.crow_indices = np.ascontiguousarray(crow, dtype=INT64).tobytes()
        message.sparse_csr.col_indices = np.ascontiguousarray(col, dtype=INT64).tobytes()
    message.dtype = dtype
    message.shape.extend(shape)


def topk_matrices(rows: Sequence[Sequence[tuple[int, float]] | None]) -> TopkMatrices:
    """List-form top-k rows (None for a position without any) as the wire's two matrices, at least one
    column wide so that a prompt whose positions are all empty still reads back as "asked for"."""
    k = max([1, *(len(row) for row in rows if row)])
    token_ids = np.zeros((len(rows), k), dtype=INT64)
    logprobs = np.full((len(rows), k), _TOPK_EMPTY_LOGPROB, dtype=FLOAT32)
    for index, row in enumerate(rows):
        if row:
            token_ids[index, :len(row)] = [token for token, _ in row]
            logprobs[index, :len(row)] = [logprob for _, logprob in row]
    return token_ids, logprobs
