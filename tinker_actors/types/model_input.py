"""ModelInput: the tokens (and image chunks) a model reads, with the builders of FEATURES D1.

Chunks are discriminated by the keys they carry (``tokens`` / ``data`` / ``location``), because the
official SDK never sends the ``type`` field (it is a default); an explicit ``type`` is accepted too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag, field_serializer, field_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel

__all__ = [
    "EncodedTextChunk",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ModelInput",
    "ModelInputChunk",
]

ImageFormat = Literal["png", "jpeg"]


class EncodedTextChunk(RequestModel):
    """A run of token ids."""

    tokens: list[int]
    type: Literal["encoded_text"] = "encoded_text"

    @property
    def length(self) -> int:
        return len(self.tokens)


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
        """One text chunk holding ``tokens``."""
        return cls(chunks=[EncodedTextChunk(tokens=list(tokens))])

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
