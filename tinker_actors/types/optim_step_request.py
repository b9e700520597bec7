"""``tinker.types.optim_step_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import AdamParams, OptimStepRequest

__all__ = ["AdamParams", "OptimStepRequest"]
