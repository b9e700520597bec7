"""``CreateCustomLossRequest`` (protocol 0.38): upload a traced custom loss to the session.

Never sent by this client: its custom losses run on the client (see ``custom_loss_input``).
"""

from __future__ import annotations

from typing import Literal

from tinker_actors.types._base import RequestModel
from tinker_actors.types.custom_loss_graph import CustomLossGraph
from tinker_actors.types.custom_loss_input import CustomLossInput

__all__ = ["CreateCustomLossRequest"]


class CreateCustomLossRequest(RequestModel):
    session_id: str
    custom_loss_seq_id: int
    name: str
    inputs: list[CustomLossInput]
    """The graph's inputs in order, ``logprobs`` first."""
    graph: CustomLossGraph
    type: Literal["create_custom_loss"] = "create_custom_loss"
