"""``tinker.types.request_id`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.aliases import RequestID

__all__ = ["RequestID"]
