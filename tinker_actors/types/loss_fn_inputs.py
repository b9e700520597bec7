"""``tinker.types.loss_fn_inputs`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.aliases import LossFnInputs

__all__ = ["LossFnInputs"]
