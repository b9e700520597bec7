"""``tinker.lib.public_interfaces.rest_client`` of the official SDK 0.6.3: ``RestClient``, re-exported."""

from tinker_actors.clients.rest import RestClient

__all__ = ["RestClient"]
