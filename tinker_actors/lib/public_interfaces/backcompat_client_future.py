"""``tinker.lib.public_interfaces.backcompat_client_future`` of the official SDK 0.38: the same objects,
re-exported."""

from tinker_actors.clients.backcompat import BackcompatClientFuture

__all__ = ["BackcompatClientFuture"]
