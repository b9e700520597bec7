"""``tinker.lib.public_interfaces`` of the official SDK 0.6.3: the clients and futures, re-exported."""

from tinker_actors.lib.public_interfaces.api_future import APIFuture, AwaitableConcurrentFuture
from tinker_actors.lib.public_interfaces.sampling_client import SamplingClient
from tinker_actors.lib.public_interfaces.service_client import ServiceClient
from tinker_actors.lib.public_interfaces.training_client import TrainingClient

__all__ = ["APIFuture", "AwaitableConcurrentFuture", "SamplingClient", "ServiceClient", "TrainingClient"]
