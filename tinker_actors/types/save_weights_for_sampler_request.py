"""``tinker.types.save_weights_for_sampler_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import SaveWeightsForSamplerRequest

__all__ = ["SaveWeightsForSamplerRequest"]
