"""``tinker.types.load_weights_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import LoadWeightsResponse

__all__ = ["LoadWeightsResponse"]
