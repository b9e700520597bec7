"""A direct writer of the protobuf encoding, for the one big message the client sends.

Why not the generated classes: building a ForwardBackwardRequest of 256 x 2048 tokens through them
copies every packed array into the message and again when serializing, and costs about three times
what writing the same bytes directly does. Here each nested message is a list of parts whose sizes
are known, so the payloads (token and tensor bytes, often views of the arrays that hold them) are copied
once, by the final ``b"".join`` of the whole body.

Only the encoding rules the 0.38 request uses are implemented: varints (int32, int64, enums, bools),
little-endian doubles, length-delimited strings, bytes, messages and packed repeated int64. Field
numbers come from the generated module's descriptors (``tinker.proto`` stays the one source); the
bytes are checked against the generated classes and the official SDK by tests/wire.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from tinker_actors.errors import InvalidInputError

__all__ = ["MessageWriter", "field_header", "packed_int64_field", "varint_field"]

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_UINT64_MASK = (1 << 64) - 1
_DOUBLE = struct.Struct("<d")
_ZERO_DOUBLE = _DOUBLE.pack(0.0)


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    # Negative int32/int64 values are written as their 64-bit two's complement (ten bytes), as protobuf does.
    value &= _UINT64_MASK
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:  # up to 2 MB: the length of every array of a datum
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _key(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def field_header(number: int, size: int) -> bytes:
    """The key and length of a length-delimited field (bytes, string or message) of ``size`` bytes."""
    return _key(number, _LENGTH_DELIMITED) + _varint(size)


def varint_field(number: int, value: int) -> bytes:
    """A varint field's bytes, or nothing at its default (0), as :meth:`MessageWriter.varint` writes it."""
    return _key(number, _VARINT) + _varint(value) if value else b""


def packed_int64_field(number: int, values: list[int]) -> bytes:
    """A packed repeated int64 field's bytes, or nothing when empty, as :meth:`MessageWriter.packed_int64`."""
    if not values:
        return b""
    packed = b"".join(_varint(value) for value in values)
    return field_header(number, len(packed)) + packed


class MessageWriter:
    """The parts of one message and their total size; nest with :meth:`message`, finish with :meth:`to_bytes`.

    Like protobuf's own serializers, it leaves out proto3 scalar fields at their default (0, "",
    false, b"") unless ``always`` is set (fields with explicit presence: oneof members and ``optional``).
    """

    __slots__ = ("_parts", "size")

    def __init__(self) -> None:
        self._parts: list[bytes | memoryview] = []
        self.size = 0

    def _append(self, header: bytes, payload: bytes | memoryview | None = None) -> None:
        self._parts.append(header)
        self.size += len(header)
        if payload is not None:
            self._parts.append(payload)
            self.size += len(payload)

    def varint(self, number: int, value: int, *, always: bool = False) -> None:
        if value or always:
            self._append(_key(number, _VARINT) + _varint(value))

    def double(self, number: int, value: float, *, always: bool = False) -> None:
        encoded = _DOUBLE.pack(value)
        if always or encoded != _ZERO_DOUBLE:  # by bits, as protobuf does: -0.0 is not the default
            self._append(_key(number, _FIXED64) + encoded)

    def data(self, number: int, value: bytes | memoryview, *, always: bool = False) -> None:
        """A ``bytes`` field (a memoryview must be of bytes, ``cast("B")``, and stay unchanged until joined)."""
        if value or always:
            self._append(_key(number, _LENGTH_DELIMITED) + _varint(len(value)), value)

    def data_parts(self, number: int, parts: Sequence[bytes | memoryview]) -> None:
        """A ``bytes`` field holding ``parts`` one after another (each kept as it is until joined), written even
        when empty."""
        size = sum(len(part) for part in parts)
        self._append(_key(number, _LENGTH_DELIMITED) + _varint(size))
        self._parts.extend(parts)
        self.size += size

    def string(self, number: int, value: str, *, always: bool = False) -> None:
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError(f"{value!r} is not valid unicode text (protobuf strings are UTF-8)") from None
        self.data(number, encoded, always=always)

    def packed_int64(self, number: int, values: list[int]) -> None:
        if values:
            self.data(number, b"".join(_varint(value) for value in values))

    def message(self, number: int, inner: MessageWriter) -> None:
        """``inner`` as field ``number`` (sub-messages are written even when empty: they are present)."""
        self._parts.append(_key(number, _LENGTH_DELIMITED) + _varint(inner.size))
        self.size += len(self._parts[-1]) + inner.size
        self._parts.extend(inner._parts)

    def nested(self, numbers: tuple[int, ...], head: bytes, payload: bytes | memoryview = b"",
               tail: bytes = b"") -> None:
        """Field ``numbers[0]``, a message whose field ``numbers[1]`` is a message ... whose innermost message is
        ``head + payload + tail`` (already encoded; ``payload`` is not copied): the same bytes as a writer per
        level nested with :meth:`message`, in three parts and without the writers (a hot path: every datum
        of a forward_backward is written so)."""
        size = len(head) + len(payload) + len(tail)
        for number in reversed(numbers):
            header = field_header(number, size)
            head = header + head
            size += len(header)
        self._parts.append(head)
        if payload:
            self._parts.append(payload)
        if tail:
            self._parts.append(tail)
        self.size += size

    def extend(self, other: MessageWriter) -> None:
        """The fields of ``other`` appended to this message's (as protobuf merges concatenated messages)."""
        self._parts.extend(other._parts)
        self.size += other.size

    def to_bytes(self) -> bytes:
        return b"".join(self._parts)

    def parts(self) -> tuple[bytes | memoryview, ...]:
        """The message's bytes in pieces, to be joined once with what comes around it (payloads not copied)."""
        return tuple(self._parts)
