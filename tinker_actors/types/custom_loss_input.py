"""``CustomLossInput`` (protocol 0.38): one input of a server-side custom loss and its rank.

``ServiceClient.create_custom_loss`` declares them (``LossHandle.inputs``); its handles run on the client here,
never uploaded (docs/custom-loss.md).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from tinker_actors.types._base import RequestModel

__all__ = ["CustomLossInput", "CustomLossInputRank"]

CustomLossInputRank: TypeAlias = Literal[0, 1, 2]
"""0: a scalar; 1: ``[T]``; 2: ``[T, K]``."""


class CustomLossInput(RequestModel):
    name: str
    """``logprobs``, or the ``loss_fn_inputs`` key the loss reads."""
    rank: CustomLossInputRank
    """The rank every datum's value has."""
