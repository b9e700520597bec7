"""``tinker.types.cursor`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import Cursor

__all__ = ["Cursor"]
