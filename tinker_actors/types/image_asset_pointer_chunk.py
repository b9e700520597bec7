"""``tinker.types.image_asset_pointer_chunk`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.model_input import ImageAssetPointerChunk

__all__ = ["ImageAssetPointerChunk"]
