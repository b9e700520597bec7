"""``tinker.lib.public_interfaces`` of the official SDKs 0.6.3 and 0.38: the clients and futures, re-exported."""

from tinker_actors.lib.public_interfaces.admin_client import AdminClient
from tinker_actors.lib.public_interfaces.api_future import APIFuture, AwaitableConcurrentFuture
from tinker_actors.lib.public_interfaces.backcompat_sampling_client_future import BackcompatSamplingClientFuture
from tinker_actors.lib.public_interfaces.backcompat_training_client_future import BackcompatTrainingClientFuture
from tinker_actors.lib.public_interfaces.custom_loss import LossHandle, PerDatumLossFn
from tinker_actors.lib.public_interfaces.rest_client import RestClient
from tinker_actors.lib.public_interfaces.sampling_client import SamplingClient
from tinker_actors.lib.public_interfaces.service_client import ServiceClient
from tinker_actors.lib.public_interfaces.training_client import TrainingClient

__all__ = [
    "APIFuture",
    "AdminClient",
    "AwaitableConcurrentFuture",
    "BackcompatSamplingClientFuture",
    "BackcompatTrainingClientFuture",
    "LossHandle",
    "PerDatumLossFn",
    "RestClient",
    "SamplingClient",
    "ServiceClient",
    "TrainingClient",
]
