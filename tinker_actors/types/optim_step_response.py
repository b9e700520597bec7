"""``tinker.types.optim_step_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import OptimStepResponse

__all__ = ["OptimStepResponse"]
