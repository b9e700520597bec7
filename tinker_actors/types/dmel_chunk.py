"""``DmelChunk`` (protocol 0.38): an audio model input, the serialized DMel token tensor.

The official 0.38 type, so code that builds one imports it; not supported yet by tinker-actors (no wire form
is written for it, and no model here reads audio): a ``ModelInput`` holding one is refused when it is built
(``types/unsupported.py``). Its ``length`` (the number of DMel frames) is read from the tensor container's
header, as the official SDK's: an optional constant-tensor marker byte (254), a dtype byte (0 to 7), then the
number of dimensions and each dimension as unsigned LEB128 varints; ``length`` is the first dimension.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import field_serializer, field_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel

__all__ = ["DmelChunk", "DmelHeaderError"]

_CONSTANT_MARKER = 254
_DTYPE_BYTES = range(8)


class DmelHeaderError(InvalidInputError):
    """The DMel bytes do not start with a tensor container header (empty, truncated, an unknown dtype byte, or a
    tensor without dimensions)."""


class DmelChunk(RequestModel):
    dmel: bytes
    """The serialized tensor holding the DMel tokens (base64 in JSON)."""
    type: Literal["dmel"] = "dmel"

    @field_validator("dmel", mode="before")
    @classmethod
    def _decode_base64(cls, value: Any) -> Any:
        return base64.b64decode(value) if isinstance(value, str) else value

    @field_serializer("dmel")
    def _encode_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @property
    def length(self) -> int:
        """The number of DMel frames: the first dimension of the tensor, read from its header (the payload is not
        decoded). :class:`DmelHeaderError` when the bytes hold no tensor header."""
        shape = _container_shape(self.dmel)
        if not shape:
            raise DmelHeaderError("the DMel tensor has no dimensions, so no length")
        return shape[0]


def _container_shape(data: bytes) -> tuple[int, ...]:
    """The shape a tensor container's header states."""
    if not data:
        raise DmelHeaderError("the DMel bytes are empty")
    offset = 1 if data[0] == _CONSTANT_MARKER else 0
    if offset >= len(data) or data[offset] not in _DTYPE_BYTES:
        what = "truncated" if offset >= len(data) else f"an unknown dtype byte ({data[offset]})"
        raise DmelHeaderError(f"the DMel tensor header is {what}")
    ndim, offset = _varint(data, offset + 1)
    shape = []
    for _ in range(ndim):
        size, offset = _varint(data, offset)
        shape.append(size)
    return tuple(shape)


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``offset``, and the offset after it."""
    value = 0
    for shift in range(0, 64, 7):
        if offset >= len(data):
            raise DmelHeaderError("the DMel tensor header is truncated")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
    raise DmelHeaderError("the DMel tensor header holds a number longer than 64 bits")
