"""``tinker.types.session_search_response`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.sessions import SessionSearchResponse

__all__ = ["SessionSearchResponse"]
