"""``tinker.types.list_sessions_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import ListSessionsResponse

__all__ = ["ListSessionsResponse"]
