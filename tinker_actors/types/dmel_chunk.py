"""``DmelChunk`` (protocol 0.38): an audio model input, the serialized DMel token tensor.

The official 0.38 type, so code that builds one imports it; not supported yet by tinker-actors (no wire form
is written for it, and no model here reads audio): a ``ModelInput`` holding one is refused when it is built
(``types/unsupported.py``).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from pydantic import field_serializer, field_validator

from tinker_actors.types._base import RequestModel

__all__ = ["DmelChunk"]


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
