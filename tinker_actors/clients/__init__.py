"""The clients: handles that send typed messages to supervised actors and return futures."""

from tinker_actors.clients.rest import RestClient
from tinker_actors.clients.sampling import RetryConfig, SamplingClient
from tinker_actors.clients.service import ServiceClient
from tinker_actors.clients.training import TrainingClient

__all__ = ["RestClient", "RetryConfig", "SamplingClient", "ServiceClient", "TrainingClient"]
