"""``tinker.types.sampled_sequence`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.sampling import SampledSequence

__all__ = ["SampledSequence"]
