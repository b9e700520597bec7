"""``tinker.types.weights_info_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.checkpoints import WeightsInfoResponse

__all__ = ["WeightsInfoResponse"]
