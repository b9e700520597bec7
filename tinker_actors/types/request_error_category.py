"""``tinker.types.request_error_category`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.errors import RequestErrorCategory

__all__ = ["RequestErrorCategory"]
