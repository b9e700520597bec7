"""``tinker.types.training_run`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import TrainingRun

__all__ = ["TrainingRun"]
