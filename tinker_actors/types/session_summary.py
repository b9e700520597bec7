"""``tinker.types.session_summary`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.sessions import SessionSummary

__all__ = ["SessionSummary"]
