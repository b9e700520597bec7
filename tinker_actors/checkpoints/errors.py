"""The errors of downloading a checkpoint's files and of pushing a checkpoint to the Hugging Face Hub.

Each says what went wrong and what to do. None of them quotes a Hugging Face token or a signed download
URL (the URL is the credential of its download): messages are written here, and Hub text, when quoted,
goes through :func:`tinker_actors.tokenizers.hub.redact_tokens`.
"""

from __future__ import annotations

from tinker_actors.errors import ErrorCategory, InvalidInputError, TinkerError

__all__ = [
    "CheckpointDownloadError",
    "HubAccessError",
    "HubNotLoggedInError",
    "HubPushError",
    "HubRepoConflictError",
    "HubUnavailableError",
    "InvalidCheckpointPathError",
    "InvalidHubOptionError",
    "NoPeftAdapterError",
]


class InvalidCheckpointPathError(InvalidInputError):
    """Not a tinker path of a checkpoint that can be exported (refused before any request)."""


class CheckpointDownloadError(TinkerError):
    """Fetching a checkpoint's files from their download URLs failed (``retryable`` when trying again may help:
    a transport failure or a server error)."""

    default_category = ErrorCategory.UNKNOWN


class NoPeftAdapterError(InvalidInputError):
    """The checkpoint holds no PEFT adapter (``adapter_config.json`` with ``adapter_model.safetensors`` or
    ``adapter_model.bin``), so there is nothing the Hub could serve as a LoRA adapter."""


class InvalidHubOptionError(InvalidInputError):
    """A Hub option that cannot work (a malformed repository id, ``create_pr`` with a branch, patterns that
    leave no file to upload): refused before anything is uploaded."""


class HubPushError(TinkerError):
    """Base of the Hugging Face Hub's refusals and failures while pushing a checkpoint."""

    def __init__(self, message: str = "", *, status_code: int | None = None, category: ErrorCategory | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, category=category, retryable=retryable)
        self.status_code = status_code


class HubNotLoggedInError(HubPushError):
    """No Hugging Face token (``HF_TOKEN``, ``hf auth login`` or ``token=``), or the Hub rejected it."""

    default_category = ErrorCategory.USER


class HubAccessError(HubPushError):
    """The Hub refused the upload: the token cannot write to that repository or namespace, or the repository,
    branch or pull request does not accept it."""

    default_category = ErrorCategory.USER


class HubRepoConflictError(HubPushError):
    """The repository already holds another checkpoint (its model card names another tinker path)."""

    default_category = ErrorCategory.USER


class HubUnavailableError(HubPushError):
    """The Hub could not be reached, answered with a server error, or downloads are off (``HF_HUB_OFFLINE``)."""

    default_category = ErrorCategory.UNKNOWN
    default_retryable = True
