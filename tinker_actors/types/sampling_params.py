"""``tinker.types.sampling_params`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import SamplingParams

__all__ = ["SamplingParams"]
