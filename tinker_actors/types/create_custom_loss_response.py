"""``CreateCustomLossResponse`` (protocol 0.38): the stored loss's id."""

from __future__ import annotations

from typing import Literal

from tinker_actors.types._base import ResponseModel

__all__ = ["CreateCustomLossResponse"]


class CreateCustomLossResponse(ResponseModel):
    loss_id: str
    """Names the loss in ``forward_backward`` requests of the same session."""
    type: Literal["create_custom_loss"] = "create_custom_loss"
