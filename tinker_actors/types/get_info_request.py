"""``tinker.types.get_info_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.training import GetInfoRequest

__all__ = ["GetInfoRequest"]
