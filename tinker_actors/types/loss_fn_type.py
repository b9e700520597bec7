"""``tinker.types.loss_fn_type`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import LossFnType

__all__ = ["LossFnType"]
