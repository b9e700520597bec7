"""``tinker.lib.retry_handler`` of the official SDK 0.6.3: ``RetryConfig``, re-exported."""

from tinker_actors.clients.sampling import RetryConfig

__all__ = ["RetryConfig"]
