"""``tinker.types.forward_backward_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import ForwardBackwardRequest

__all__ = ["ForwardBackwardRequest"]
