"""Numbers between numpy arrays and the packed ``bytes`` fields of the 0.38 messages.

Every packed field is little-endian whatever the machine (protobuf itself is little-endian), so the
dtypes below spell the byte order out instead of using the native one. Bytes become arrays with
``np.frombuffer`` (no copy, no Python list) and arrays become bytes with ``tobytes``. Python lists
(what a user may pass) are packed by ``struct``, which reads a list about three times faster than
``np.asarray`` and checks the int32 / int64 range on the way.

Malformed bytes raise :class:`WireFormatError`; the codec turns it into the typed error of its side
(a bad request on the server, a bad response on the client).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import TensorDtype
from tinker_actors.wire.v0_38 import tinker_pb2 as pb

__all__ = [
    "FLOAT32",
    "INT32",
    "INT32_MAX",
    "INT32_MIN",
    "INT64",
    "Packed",
    "WireFormatError",
    "check_int32",
    "domain_dtype_of",
    "pack",
    "pack_int32",
    "proto_dtype_of",
    "raw_dtype_of",
    "unpack",
    "unpack_proto_dtype",
    "widen",
]

FLOAT32 = np.dtype("<f4")
INT32 = np.dtype("<i4")
INT64 = np.dtype("<i8")
_BFLOAT16_BITS = np.dtype("<u2")

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

_DOMAIN_TO_PROTO: dict[str, pb.DType] = {"float32": pb.DTYPE_FLOAT32, "int64": pb.DTYPE_INT64}
_DOMAIN_TO_NUMPY: dict[str, np.dtype[Any]] = {"float32": FLOAT32, "int64": INT64}
_DOMAIN_TO_STRUCT: dict[str, str] = {"float32": "f", "int64": "q"}
# What each wire dtype is read as, and the domain dtype it widens to (the domain knows two).
_PROTO_TO_NUMPY: dict[int, np.dtype[Any]] = {
    pb.DTYPE_FLOAT32: FLOAT32,
    pb.DTYPE_INT64: INT64,
    pb.DTYPE_INT32: INT32,
    pb.DTYPE_BFLOAT16: _BFLOAT16_BITS,
}
_PROTO_TO_DOMAIN: dict[int, TensorDtype] = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_BFLOAT16: "float32",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int64",
}


class WireFormatError(ValueError):
    """Bytes that do not hold what the schema says they hold."""


def check_int32(value: int, what: str) -> int:
    """``value`` if it fits a protobuf int32 field, else a typed error naming ``what``."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise InvalidInputError(f"{what} {value} does not fit the wire's int32")
    return value


def proto_dtype_of(dtype: TensorDtype) -> pb.DType:
    return _DOMAIN_TO_PROTO[dtype]


def domain_dtype_of(proto_dtype: int, what: str) -> TensorDtype:
    """The domain dtype a wire dtype widens to."""
    try:
        return _PROTO_TO_DOMAIN[proto_dtype]
    except KeyError:
        raise WireFormatError(f"{what} has an unknown dtype {proto_dtype}") from None


Packed = bytes | memoryview
"""Bytes, or (``copy=False``) a read-only view of an array's bytes: either joins into a body."""

_VIEWS_ARE_WIRE_ORDER = sys.byteorder == "little"


def _bytes_of(array: npt.NDArray[Any], copy: bool) -> Packed:
    if copy or not _VIEWS_ARE_WIRE_ORDER:
        return array.tobytes()
    return np.ascontiguousarray(array).data.cast("B")


Numbers = Sequence[int] | Sequence[float] | npt.NDArray[Any]


@overload
def pack(values: Numbers, dtype: TensorDtype, what: str, *, copy: Literal[True] = True) -> bytes: ...
@overload
def pack(values: Numbers, dtype: TensorDtype, what: str, *, copy: bool) -> Packed: ...
def pack(values: Numbers, dtype: TensorDtype, what: str, *, copy: bool = True) -> Packed:
    """The little-endian bytes of ``values`` as the domain ``dtype`` (float32 or int64). With ``copy=False``
    an array already in that layout is returned as a view of its bytes (for a body joined once; the array
    must not change until then)."""
    if isinstance(values, list):
        try:
            return struct.pack(f"<{len(values)}{_DOMAIN_TO_STRUCT[dtype]}", *values)
        except (struct.error, OverflowError):
            pass  # a value struct will not take as is (out of range, a float for int64): numpy's rules below
    try:
        array = np.asarray(values, dtype=_DOMAIN_TO_NUMPY[dtype])
    except OverflowError:
        raise InvalidInputError(f"{what} holds a value outside the {dtype} range") from None
    return _bytes_of(array, copy)


@overload
def pack_int32(values: Sequence[int] | npt.NDArray[Any], what: str, *, copy: Literal[True] = True) -> bytes: ...
@overload
def pack_int32(values: Sequence[int] | npt.NDArray[Any], what: str, *, copy: bool) -> Packed: ...
def pack_int32(values: Sequence[int] | npt.NDArray[Any], what: str, *, copy: bool = True) -> Packed:
    """The little-endian int32 bytes of ``values`` (token ids), refusing what int32 cannot hold;
    ``copy`` as for :func:`pack`."""
    if isinstance(values, list):
        try:
            return struct.pack(f"<{len(values)}i", *values)
        except (struct.error, OverflowError):
            pass  # out of range (refused below) or not ints (numpy's rules below)
    elif isinstance(values, np.ndarray) and values.dtype == INT32:
        return _bytes_of(values, copy)
    try:
        wide = np.asarray(values, dtype=INT64)
    except OverflowError:
        raise InvalidInputError(f"{what} holds a value outside the int32 range") from None
    if wide.size and (int(wide.min()) < INT32_MIN or int(wide.max()) > INT32_MAX):
        raise InvalidInputError(f"{what} holds a value outside the int32 range")
    return wide.astype(INT32).tobytes()


def unpack(content: bytes | memoryview, dtype: np.dtype[Any], what: str) -> npt.NDArray[Any]:
    """A read-only view of ``content`` as ``dtype`` (no copy)."""
    if len(content) % dtype.itemsize:
        raise WireFormatError(f"{what} holds {len(content)} bytes, not a whole number of {dtype.name} values")
    return np.frombuffer(content, dtype=dtype)


def unpack_proto_dtype(content: bytes | memoryview, proto_dtype: int, what: str) -> npt.NDArray[Any]:
    """``content`` read as the wire ``proto_dtype`` and widened to its domain dtype (float32 / int64)."""
    return widen(unpack(content, raw_dtype_of(proto_dtype, what), what), proto_dtype)


def widen(raw: npt.NDArray[Any], proto_dtype: int) -> npt.NDArray[Any]:
    """Values read as the wire dtype, as the domain dtype they stand for (read-only)."""
    if proto_dtype == pb.DTYPE_BFLOAT16:
        # A bfloat16 is the upper half of a float32: shift the bits into place, exact for every value.
        wide = (raw.astype(np.uint32) << 16).view(np.float32)
    elif proto_dtype == pb.DTYPE_INT32:
        wide = raw.astype(np.int64)
    else:
        return raw
    wide.flags.writeable = False  # read-only like the views of the message's bytes
    return wide


def raw_dtype_of(proto_dtype: int, what: str) -> np.dtype[Any]:
    """The numpy dtype the bytes of the wire ``proto_dtype`` are read as, before :func:`widen`."""
    raw_dtype = _PROTO_TO_NUMPY.get(proto_dtype)
    if raw_dtype is None:
        raise WireFormatError(f"{what} has an unknown dtype {proto_dtype}")
    return raw_dtype
