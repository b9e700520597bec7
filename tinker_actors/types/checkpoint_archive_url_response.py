"""``tinker.types.checkpoint_archive_url_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import CheckpointArchiveUrlResponse

__all__ = ["CheckpointArchiveUrlResponse"]
