"""Opt-in recovery of a training client whose model the service lost (docs/guides/recovery.md).

``TrainingClient.enable_recovery(RecoveryPolicy(...))`` switches it on; what answers mean "lost" is in
:mod:`tinker_actors.recovery.signals`, the gate the client's calls pass in :mod:`tinker_actors.recovery.watch`,
the actor that recreates the model in :mod:`tinker_actors.recovery.actor`. Periodic checkpoints, which it
recovers from, are ``tinker_actors.training.checkpoint_policy``.

Only the types are imported here (the modules that talk to the service import the clients package, which
imports this one lazily). ``CheckpointPolicy`` and ``CheckpointStatus`` are re-exported for convenience.
"""

from tinker_actors.recovery.lineage import SavedCheckpoint
from tinker_actors.recovery.policy import (
    CheckpointChoice,
    RecoveryFailedError,
    RecoveryPolicy,
    RecoveryReport,
    RecoveryStatus,
    StepRolledBackError,
)
from tinker_actors.recovery.steps import StepSet
from tinker_actors.training.checkpoint_policy import CheckpointPolicy, CheckpointStatus, PeriodicCheckpoint

__all__ = [
    "CheckpointChoice",
    "CheckpointPolicy",
    "CheckpointStatus",
    "PeriodicCheckpoint",
    "RecoveryFailedError",
    "RecoveryPolicy",
    "RecoveryReport",
    "RecoveryStatus",
    "SavedCheckpoint",
    "StepRolledBackError",
    "StepSet",
]
