"""``tinker.types.create_session_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.session import CreateSessionResponse

__all__ = ["CreateSessionResponse"]
