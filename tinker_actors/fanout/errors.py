"""The typed errors of fanning work out to other processes."""

from __future__ import annotations

from typing import Any

from tinker_actors.errors import ClientStoppedError, ErrorCategory, InvalidInputError, TinkerError

__all__ = ["ForkedProcessError", "InvalidSamplerHandleError", "MissingExtraError", "RolloutWorkerDiedError"]


class ForkedProcessError(ClientStoppedError):
    """A client (or the runtime) was used in a process ``fork()``-ed from the one that started it.

    The threads that run it (the IoLoop, the actors) do not survive ``fork()``: rather than wait forever for
    them, the call refuses at once. Start workers with ``spawn`` or ``forkserver`` and pass them the
    SamplingClient (pickled, or as ``get_sampler_handle()``).
    """

    default_retryable = False


class InvalidSamplerHandleError(InvalidInputError):
    """A string given to ``SamplingClient.from_sampler_handle`` is not a sampler handle."""


class RolloutWorkerDiedError(TinkerError):
    """The worker running a rollout died (its process was killed or crashed) before the rollout finished.

    The rollout may be submitted again (``retryable``): a worker pool restarts its workers. ``task`` is the
    rollout's input and ``worker`` the index of the worker that died.
    """

    default_retryable = True

    def __init__(self, message: str, *, task: Any = None, worker: int | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.worker = worker


class MissingExtraError(TinkerError, ImportError):
    """An optional extra this feature needs is not installed (the message names the ``pip install`` to run)."""

    default_category = ErrorCategory.USER
