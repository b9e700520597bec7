"""The service's 0.38 forward_backward result written straight from numpy arrays.

:meth:`ProtobufCodec.encode_forward_backward_output` takes the domain ``ForwardBackwardOutput``,
whose tensors hold Python lists; a service that computed numpy arrays would turn each array into a
list only for the codec to turn it back. This writes the same message from the arrays: for a
256 x 2048-token result, milliseconds instead of a fifth of a second. The message is the codec's
(same records, dtypes, offsets and shapes), so the client side reads both alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.wire.codec import CONTENT_TYPE_PROTOBUF, EncodedBody
from tinker_actors.wire.v0_38 import tinker_pb2 as pb
from tinker_actors.wire.v0_38.arrays import FLOAT32, INT64

__all__ = ["encode_forward_backward_arrays"]

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
    message = pb.ForwardBackwardOutput(loss_fn_output_type=loss_fn_output_type)
    for name, number in metrics.items():
        message.metrics[name] = float(number)
    if datums and any(set(datum) != set(datums[0]) for datum in datums):
        raise InvalidInputError("every datum of a forward_backward result must have the same output names")
    # As the codec: datums whose outputs share dtypes and trailing shapes share a record, in datum order.
    start = 0
    while start < len(datums):
        signature = _signature(datums[start])
        end = start + 1
        while end < len(datums) and _signature(datums[end]) == signature:
            end += 1
        _write_record(message.loss_fn_outputs.add(), datums[start:end])
        start = end
    return EncodedBody(message.SerializeToString(), CONTENT_TYPE_PROTOBUF)


def _signature(datum: Mapping[str, npt.NDArray[Any]]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in datum.items()))


def _write_record(record: pb.ArrayRecord, datums: list[dict[str, npt.NDArray[Any]]]) -> None:
    record.num_datums = len(datums)
    for name, first in datums[0].items():
        arrays = [datum[name] for datum in datums]
        offsets = np.zeros(len(arrays) + 1, dtype=INT64)
        np.cumsum([array.nbytes for array in arrays], out=offsets[1:])
        batched = record.fields[name]
        batched.dtype = pb.DTYPE_FLOAT32 if first.dtype == FLOAT32 else pb.DTYPE_INT64
        batched.data = b"".join(np.ascontiguousarray(array).tobytes() for array in arrays)
        batched.offsets = offsets.tobytes()
        batched.trailing_shape.extend(first.shape[1:])
