"""``tinker.types.unload_model_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import UnloadModelRequest

__all__ = ["UnloadModelRequest"]
