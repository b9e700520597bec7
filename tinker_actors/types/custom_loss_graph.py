"""``CustomLossGraph`` (protocol 0.38): a traced custom loss as plain data, its torch.fx nodes in order.

Nothing in it runs until the server rebuilds it from its own list of allowed operations. This client never
uploads one: its custom losses run on the client (see ``custom_loss_input``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import Field

from tinker_actors.types._base import RequestModel

__all__ = ["CustomLossGraph", "CustomLossNode", "CustomLossNodeOp"]

CustomLossNodeOp: TypeAlias = Literal["placeholder", "get_attr", "call_function", "call_method", "call_module",
                                      "output"]


class CustomLossNode(RequestModel):
    """One node, as torch.fx records it."""

    op: CustomLossNodeOp
    name: str
    """Unique in the graph; later nodes refer to the node by it."""
    target: str
    """The parameter name, the function's qualified name (``torch.exp``, ``operator.mul``), the method or
    attribute name, or ``output``."""
    args: list[Any] = Field(default_factory=list)
    """Encoded arguments: JSON scalars, strings and lists stand for themselves; anything else is a one-key
    object (``{"ref": name}``, ``{"tuple": [...]}``, ``{"dict": {...}}``, ``{"slice": [...]}``, ...)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Encoded keyword arguments, in the same form."""


class CustomLossGraph(RequestModel):
    format: Literal[1] = 1
    nodes: list[CustomLossNode]
