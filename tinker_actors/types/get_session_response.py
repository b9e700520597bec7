"""``tinker.types.get_session_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import GetSessionResponse

__all__ = ["GetSessionResponse"]
