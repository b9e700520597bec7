"""``tinker.types.model_input_chunk`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.model_input import ModelInputChunk

__all__ = ["ModelInputChunk"]
