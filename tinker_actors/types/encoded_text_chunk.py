"""``tinker.types.encoded_text_chunk`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.model_input import EncodedTextChunk

__all__ = ["EncodedTextChunk"]
