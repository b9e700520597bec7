"""``tinker.types.get_server_capabilities_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.session import GetServerCapabilitiesResponse, SupportedModel

__all__ = ["GetServerCapabilitiesResponse", "SupportedModel"]
