"""``tinker.types.session_search_cursor`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.sessions import SessionSearchCursor

__all__ = ["SessionSearchCursor"]
