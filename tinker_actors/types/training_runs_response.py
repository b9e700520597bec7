"""``tinker.types.training_runs_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import TrainingRunsResponse

__all__ = ["TrainingRunsResponse"]
