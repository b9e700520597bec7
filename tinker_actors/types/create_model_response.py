"""``tinker.types.create_model_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import CreateModelResponse

__all__ = ["CreateModelResponse"]
