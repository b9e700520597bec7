"""What recovery does (:class:`RecoveryPolicy`), what it tells the caller (:class:`RecoveryReport`), and the
typed errors of the calls it could not save (docs/guides/recovery.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tinker_actors.errors import ErrorCategory, InvalidInputError, TinkerError
from tinker_actors.recovery.lineage import SavedCheckpoint

__all__ = ["CheckpointChoice", "RecoveryFailedError", "RecoveryPolicy", "RecoveryReport", "RecoveryStatus",
           "StepRolledBackError"]

CheckpointChoice = Literal["latest"] | Callable[[Sequence[SavedCheckpoint]], SavedCheckpoint | None]
"""``"latest"``: the newest checkpoint this client saved (periodic or ``save_state``). A callable gets them
all (oldest first, each with the steps it holds) and returns the one to use (None: none fits)."""


@dataclass(frozen=True)
class RecoveryReport:
    """One recovery: what was lost, what was kept, what was sent again."""

    old_model_id: str
    new_model_id: str
    checkpoint: str
    """The ``tinker://`` path the new model was loaded from (weights and optimizer state)."""
    checkpoint_step: int
    """The last step numbered before that checkpoint was saved."""
    rolled_back_steps: tuple[int, ...]
    """Every step whose effect is gone and will not come back by itself: steps the lost model had applied
    after the checkpoint, and steps whose gradient was lost with it (their pending ``forward_backward`` and
    ``optim_step`` calls failed with :class:`StepRolledBackError`). Re-run their data to get them back."""
    resubmitted: int
    """Calls that had not run (or whose outcome was lost with the model) and were sent to the new model."""
    resubmitted_steps: tuple[int, ...]
    """The ``optim_step`` calls among them (their step numbers)."""
    attempts: int
    cause: str
    """What said the model was lost (the error of the first call that failed for it)."""
    duration_s: float


@dataclass(frozen=True)
class RecoveryStatus:
    """``TrainingClient.recovery_status()``."""

    enabled: bool
    model_id: str
    recovering: bool
    recoveries: tuple[RecoveryReport, ...]
    """The recoveries so far, oldest first (at most the last 100)."""
    failed: str | None
    """Set once recovery gave up: every later call fails with :class:`RecoveryFailedError`."""
    checkpoints: tuple[SavedCheckpoint, ...]
    """The checkpoints recovery can use, oldest first."""


@dataclass(frozen=True)
class RecoveryPolicy:
    """Opt-in recovery of a training client whose model the service lost (``TrainingClient.enable_recovery``).

    ``max_attempts``: how many times to try to recreate the model for one loss; ``initial_wait`` /
    ``max_wait``: the wait before the second attempt, doubling up to the maximum; ``checkpoint``: which
    checkpoint to recreate it from; ``on_recovery``: called (in a thread of its own) with each
    :class:`RecoveryReport`, e.g. to queue the data of the rolled-back steps again; ``on_failure``: called with
    the :class:`RecoveryFailedError` when recovery gives up.
    """

    max_attempts: int = 3
    initial_wait: float = 2.0
    max_wait: float = 30.0
    checkpoint: CheckpointChoice = "latest"
    on_recovery: Callable[[RecoveryReport], object] | None = field(default=None, compare=False)
    on_failure: Callable[[RecoveryFailedError], object] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidInputError(f"RecoveryPolicy.max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("initial_wait", "max_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"RecoveryPolicy.{name} must be a finite number of seconds >= 0, "
                                        f"got {value!r}")
        if self.max_wait < self.initial_wait:
            raise InvalidInputError("RecoveryPolicy.max_wait must be at least initial_wait")
        if self.checkpoint != "latest" and not callable(self.checkpoint):
            raise InvalidInputError(f'RecoveryPolicy.checkpoint must be "latest" or a callable, '
                                    f"got {self.checkpoint!r}")
        for name in ("on_recovery", "on_failure"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise InvalidInputError(f"RecoveryPolicy.{name} must be callable")

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based; none before the first)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_wait, self.initial_wait * 2 ** (attempt - 2)))

    def choose(self, checkpoints: Sequence[SavedCheckpoint]) -> SavedCheckpoint | None:
        known = [c for c in checkpoints if c.steps is not None]
        if self.checkpoint == "latest":
            return known[-1] if known else None
        return self.checkpoint(known)


class StepRolledBackError(TinkerError):
    """This call belonged to a step whose gradient was lost with the model (a recovery rolled it back); it was
    not sent. The step is in the report's ``rolled_back_steps``: re-run its data to get it back."""

    default_category = ErrorCategory.SERVER
    default_retryable = True

    def __init__(self, message: str, *, step: int, report: RecoveryReport | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.report = report


class RecoveryFailedError(TinkerError):
    """The model was lost and recovery gave up (``attempts`` used; ``cause`` the last error). Calls that were
    waiting for it fail with this error, and so does every later call of the client."""

    default_category = ErrorCategory.SERVER

    def __init__(self, message: str, *, model_id: str, attempts: int, cause: BaseException | None = None,
                 rolled_back_steps: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.attempts = attempts
        self.cause = cause
        self.rolled_back_steps = rolled_back_steps
