"""``tinker.types.get_sampler_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.rest import GetSamplerResponse

__all__ = ["GetSamplerResponse"]
