"""Checkpoints outside the service: downloading their files, pushing them to the Hugging Face Hub.

* :func:`download_checkpoint`: a checkpoint's files into a directory (``tinker-actors checkpoint download``);
* :func:`push_checkpoint_to_hub`: a checkpoint as a PEFT adapter in a Hub repository (``tinker-actors
  checkpoint push-hf``, the official 0.38 CLI's ``tinker checkpoint push-hf``).

Both take a :class:`~tinker_actors.clients.RestClient` and block the caller's thread.
"""

from tinker_actors.checkpoints.download import download_checkpoint
from tinker_actors.checkpoints.errors import (
    CheckpointDownloadError,
    HubAccessError,
    HubNotLoggedInError,
    HubPushError,
    HubRepoConflictError,
    HubUnavailableError,
    InvalidCheckpointPathError,
    InvalidHubOptionError,
    NoPeftAdapterError,
)
from tinker_actors.checkpoints.hub_export import HubPushResult, push_checkpoint_to_hub

__all__ = [
    "CheckpointDownloadError",
    "HubAccessError",
    "HubNotLoggedInError",
    "HubPushError",
    "HubPushResult",
    "HubRepoConflictError",
    "HubUnavailableError",
    "InvalidCheckpointPathError",
    "InvalidHubOptionError",
    "NoPeftAdapterError",
    "download_checkpoint",
    "push_checkpoint_to_hub",
]
