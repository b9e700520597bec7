"""``tinker.types.sample_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import SampleRequest

__all__ = ["SampleRequest"]
