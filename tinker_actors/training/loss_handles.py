"""Server-side custom losses of the official SDK 0.38: :class:`LossHandle` and :data:`PerDatumLossFn`.

In 0.38, ``ServiceClient.create_custom_loss(fn, ...)`` traces a per-datum loss with torch.fx into a
:class:`LossHandle`, which ``forward_backward_custom`` accepts in place of a callable (run on the server when
it allows, else on the client). ``create_custom_loss`` is not built yet here, so nothing makes a handle; the
types exist for code that names them. Client-side custom losses (a callable given to
``forward_backward_custom``) are built: docs/custom-loss.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, TypeAlias

from tinker_actors.types.custom_loss_input import CustomLossInput

if TYPE_CHECKING:
    import torch

__all__ = ["LossHandle", "PerDatumLossFn"]

PerDatumLossFn: TypeAlias = Callable[Concatenate["torch.Tensor", ...],
                                     tuple["torch.Tensor", Mapping[str, "torch.Tensor"]]]
"""A per-datum loss: ``(logprobs, *the loss_fn_inputs it reads) -> (scalar loss, metrics)``, metrics keyed
``custom/<name>:sum`` or ``custom/<name>:mean``."""


@dataclass(frozen=True)
class LossHandle:
    """A traced custom loss, made by ``ServiceClient.create_custom_loss`` (not built yet here)."""

    name: str
    inputs: tuple[CustomLossInput, ...]
    """``logprobs`` first, then the ``loss_fn_inputs`` keys the loss reads, in its argument order."""
    session_id: str
    """The session that made it; only that session's clients use it."""
    graph: Any = field(repr=False, compare=False)
    """The traced ``torch.fx.GraphModule``: what runs, rather than the original function."""
    loss_id: str | None = None
    """The server's id of the uploaded loss; None when it runs on the client."""

    @property
    def key(self) -> str:
        """Names the traced loss (its code and inputs), so a session uploads each loss once."""
        digest = hashlib.sha256(str(self.graph.code).encode())
        digest.update(repr(self.inputs).encode())
        return digest.hexdigest()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The ``loss_fn_inputs`` keys the loss reads, in its argument order."""
        return tuple(loss_input.name for loss_input in self.inputs[1:])
