"""``tinker.lib.public_interfaces.sampling_client`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.clients.sampling import RetryConfig, SamplingClient

__all__ = ["RetryConfig", "SamplingClient"]
