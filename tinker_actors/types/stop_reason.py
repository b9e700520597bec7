"""``tinker.types.stop_reason`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import StopReason

__all__ = ["StopReason"]
