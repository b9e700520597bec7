"""``tinker.types.model_id`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.aliases import ModelID

__all__ = ["ModelID"]
