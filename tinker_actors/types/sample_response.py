"""``tinker.types.sample_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import SampleResponse

__all__ = ["SampleResponse"]
