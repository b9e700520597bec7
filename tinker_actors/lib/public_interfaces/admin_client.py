"""``tinker.lib.public_interfaces.admin_client`` of the official SDK 0.38: ``AdminClient``, re-exported."""

from tinker_actors.clients.admin import AdminClient

__all__ = ["AdminClient"]
