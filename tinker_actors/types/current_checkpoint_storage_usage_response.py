"""``tinker.types.current_checkpoint_storage_usage_response`` of the official SDK 0.38: the same objects,
re-exported."""

from tinker_actors.types.billing import CurrentCheckpointStorageUsageItem, CurrentCheckpointStorageUsageResponse

__all__ = ["CurrentCheckpointStorageUsageItem", "CurrentCheckpointStorageUsageResponse"]
