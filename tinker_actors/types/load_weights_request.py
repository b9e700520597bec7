"""``tinker.types.load_weights_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import LoadWeightsRequest

__all__ = ["LoadWeightsRequest"]
