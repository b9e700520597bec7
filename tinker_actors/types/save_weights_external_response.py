"""``SaveWeightsExternalResponse`` (protocol 0.38): where the export is."""

from __future__ import annotations

from typing import Literal

from tinker_actors.types._base import ResponseModel

__all__ = ["SaveWeightsExternalResponse", "SaveWeightsExternalResponseInternal"]


class SaveWeightsExternalResponse(ResponseModel):
    path: str
    type: Literal["save_weights_external"] | None = None


class SaveWeightsExternalResponseInternal(ResponseModel):
    """What the request's future answers (the size too)."""

    path: str | None = None
    size_bytes: int | None = None
    type: Literal["save_weights_external"] | None = None
