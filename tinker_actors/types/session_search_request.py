"""``tinker.types.session_search_request`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.sessions import SessionSearchRequest

__all__ = ["SessionSearchRequest"]
