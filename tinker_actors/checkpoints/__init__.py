"""Checkpoints outside the service: downloading their files, pushing them to the Hugging Face Hub.

* :func:`download_checkpoint`: a checkpoint's files into a directory (``tinker-actors checkpoint download``);
* :func:`push_checkpoint_to_hub`: a checkpoint as a PEFT adapter in a Hub repository (``tinker-actors
  checkpoint push-hf``, the official 0.38 CLI's ``tinker checkpoint push-hf``).

Both take a :class:`~tinker_actors.clients.RestClient` and block the caller's thread. The Hub side (and
huggingface_hub's ``HfApi``, about 0.3 s to import) is loaded on first use, not by ``import tinker_actors``.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from tinker_actors.checkpoints.hub_export import HubPushResult, push_checkpoint_to_hub

_LOADED_ON_USE = frozenset({"HubPushResult", "push_checkpoint_to_hub"})

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


def __getattr__(name: str) -> Any:
    if name in _LOADED_ON_USE:
        from tinker_actors.checkpoints import hub_export

        return getattr(hub_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
