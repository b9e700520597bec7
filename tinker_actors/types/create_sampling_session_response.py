"""``tinker.types.create_sampling_session_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import CreateSamplingSessionResponse

__all__ = ["CreateSamplingSessionResponse"]
