"""``CopyWeightsResponse`` (protocol 0.38): where the copy is."""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel

__all__ = ["CopyWeightsResponse"]


class CopyWeightsResponse(ResponseModel):
    tinker_path: str
