"""``tinker.types.get_info_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import GetInfoResponse, ModelData

__all__ = ["GetInfoResponse", "ModelData"]
