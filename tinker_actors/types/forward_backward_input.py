"""``tinker.types.forward_backward_input`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import ForwardBackwardInput

__all__ = ["ForwardBackwardInput"]
