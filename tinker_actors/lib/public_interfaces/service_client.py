"""``tinker.lib.public_interfaces.service_client`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.clients.sampling import RetryConfig
from tinker_actors.clients.service import ServiceClient

__all__ = ["RetryConfig", "ServiceClient"]
