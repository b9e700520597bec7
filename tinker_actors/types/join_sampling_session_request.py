"""``tinker.types.join_sampling_session_request`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.types.join_sampling_session import JoinSamplingSessionRequest

__all__ = ["JoinSamplingSessionRequest"]
