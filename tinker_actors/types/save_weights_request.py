"""``tinker.types.save_weights_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import SaveWeightsRequest

__all__ = ["SaveWeightsRequest"]
