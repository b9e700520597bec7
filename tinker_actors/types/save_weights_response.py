"""``tinker.types.save_weights_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import SaveWeightsResponse

__all__ = ["SaveWeightsResponse"]
