"""ModelInput: the tokens (and image chunks) a model reads, with the builders of FEATURES D1.

Chunks are discriminated by the keys they carry (``tokens`` / ``data`` / ``location``), because the
official SDK never sends the ``type`` field (it is a default); an explicit ``type`` is accepted too.

A long text chunk made by :meth:`ModelInput.from_ints` (or read from the 0.38 wire) holds its tokens
as a read-only int32 numpy array and makes the list ``tokens`` only when it is read (see
``types/_array_backed.py``): the ids are checked and packed in one pass, which is what the 0.38 wire
sends, instead of being validated as a list and packed again when encoded.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Discriminator, Tag, field_serializer, field_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._array_backed import ArrayBacked, listed
from tinker_actors.types._base import RequestModel

__all__ = [
    "EncodedTextChunk",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ModelInput",
    "ModelInputChunk",
]

ImageFormat = Literal["png", "jpeg"]


_INT32 = np.dtype("<i4")
# Shorter runs are validated as lists, as before: for a short prompt that is cheaper than an array
# whose list is made later anyway.
_HELD_FROM = 256


def _list_of(array: npt.NDArray[Any]) -> list[Any]:
    values: list[Any] = array.tolist()
    return values


class EncodedTextChunk(RequestModel, ArrayBacked):
    """A run of token ids."""

    _array_views: ClassVar[dict[str, Any]] = {"tokens": _list_of}

    tokens: Annotated[list[int], listed(_list_of, list[int])]
    type: Literal["encoded_text"] = "encoded_text"

    @classmethod
    def from_token_ids(cls, tokens: Iterable[int]) -> EncodedTextChunk:
        """A chunk of ``tokens``: held as an int32 array when long and every id is an int32 (read with
        ``struct``, which checks both in the pass that packs them), else validated as a list."""
        if isinstance(tokens, np.ndarray):
            if tokens.dtype.kind in "iu" and tokens.ndim == 1 and tokens.size >= _HELD_FROM and \
                    int(tokens.min()) >= -(2**31) and int(tokens.max()) < 2**31:
                return cls.from_array(tokens.astype(_INT32))
            tokens = tokens.tolist()
        values = tokens if isinstance(tokens, list) else list(tokens)
        if len(values) >= _HELD_FROM:
            try:
                packed = struct.pack(f"<{len(values)}i", *values)
            except (struct.error, OverflowError):
                pass  # not all int32 ids (big ids, numeric text, floats): pydantic's rules, as for a short run
            else:
                return cls.from_array(np.frombuffer(packed, dtype=_INT32))
        return cls(tokens=list(values))

    @classmethod
    def from_array(cls, tokens: npt.NDArray[Any]) -> EncodedTextChunk:
        """A chunk holding ``tokens`` (a 1-D integer array) as it is: no copy, no check (for a codec reading
        the wire; the array should not change afterwards). The chunk reads it through a read-only view."""
        if tokens.flags.writeable:
            tokens = tokens.view()
            tokens.flags.writeable = False
        return cls._with_arrays({"tokens": tokens})

    def held_array(self) -> npt.NDArray[Any] | None:
        """The read-only integer array holding the tokens, or None when they are held as a list."""
        return self._held_array("tokens")

    @property
    def length(self) -> int:
        held = self.held_array()
        return held.size if held is not None else len(self.tokens)


def _expected_length(kind: str, expected_tokens: int | None) -> int:
    if expected_tokens is None:
        raise InvalidInputError(f"the length of an {kind} chunk is unknown: set expected_tokens")
    return expected_tokens


class ImageChunk(RequestModel):
    """Image bytes (base64 on the wire)."""

    data: bytes
    format: ImageFormat
    expected_tokens: int | None = None
    type: Literal["image"] = "image"

    @field_validator("data", mode="before")
    @classmethod
    def _decode_base64(cls, value: Any) -> Any:
        # On the wire the bytes are base64 text; users may also pass raw bytes.
        if isinstance(value, str):
            return base64.b64decode(value)
        return value

    @field_serializer("data", when_used="json")
    def _encode_base64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @property
    def length(self) -> int:
        return _expected_length("image", self.expected_tokens)


class ImageAssetPointerChunk(RequestModel):
    """An image the server fetches from ``location``."""

    format: ImageFormat
    location: str
    expected_tokens: int | None = None
    type: Literal["image_asset_pointer"] = "image_asset_pointer"

    @property
    def length(self) -> int:
        return _expected_length("image asset pointer", self.expected_tokens)


def _chunk_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        explicit = value.get("type")
        if isinstance(explicit, str):
            return explicit
        if "tokens" in value:
            return "encoded_text"
        if "data" in value:
            return "image"
        if "location" in value:
            return "image_asset_pointer"
        return None
    return getattr(value, "type", None)


ModelInputChunk = Annotated[
    Annotated[EncodedTextChunk, Tag("encoded_text")]
    | Annotated[ImageChunk, Tag("image")]
    | Annotated[ImageAssetPointerChunk, Tag("image_asset_pointer")],
    Discriminator(_chunk_kind),
]


class ModelInput(RequestModel):
    """A sequence of chunks. Builders return new objects (the type is frozen)."""

    chunks: list[ModelInputChunk]

    @classmethod
    def from_ints(cls, tokens: Iterable[int]) -> ModelInput:
        """One text chunk holding ``tokens`` (a list, any iterable of ints, or a 1-D integer numpy array)."""
        return cls(chunks=[EncodedTextChunk.from_token_ids(tokens)])

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    def to_ints(self) -> list[int]:
        """All tokens, in order; an error if any chunk is not text."""
        tokens: list[int] = []
        for chunk in self.chunks:
            if not isinstance(chunk, EncodedTextChunk):
                raise InvalidInputError(
                    f"to_ints needs text chunks only; this input has a {type(chunk).__name__}")
            tokens.extend(chunk.tokens)
        return tokens

    @property
    def length(self) -> int:
        """Context length used: tokens of text chunks plus ``expected_tokens`` of image chunks."""
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: EncodedTextChunk | ImageChunk | ImageAssetPointerChunk) -> ModelInput:
        """A new ModelInput with ``chunk`` added at the end."""
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        """A new ModelInput with one more token (as a new one-token chunk, like the official SDK)."""
        return self.append(EncodedTextChunk(tokens=[token]))
