"""What periodic checkpoints and recovery need of one TrainingClient, and switching recovery on.

The handle builds a :class:`ClientPort` (its private parts stay in ``clients/training.py``); the watch is
created on first use and put on the client's ledger, where the client's actor finds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisors import ChildSpec, Restart, Supervisor
from tinker_actors.recovery.actor import ActorDriver, RecoveryActor, UsePolicy
from tinker_actors.recovery.policy import RecoveryPolicy, RecoveryStatus
from tinker_actors.recovery.watch import ModelWatch

if TYPE_CHECKING:
    from tinker_actors.clients.context import ClientContext
    from tinker_actors.clients.ledger import TrainingLedger
    from tinker_actors.clients.rest import RestClient
    from tinker_actors.futures import APIFuture
    from tinker_actors.types import SaveWeightsResponse

__all__ = ["ClientPort", "enable_recovery", "recovery_status", "stop_children", "watch_of"]

_START_TIMEOUT_S = 10.0
_watch_lock = threading.Lock()


@dataclass(frozen=True)
class ClientPort:
    context: ClientContext
    ledger: TrainingLedger
    supervisor: Supervisor
    """The client's supervisor (``clients``): the policy and recovery actors are its children too."""
    child_id: str
    """The client actor's id: ``<child_id>-recovery`` and ``<child_id>-checkpoints`` name the others."""
    base_model: str
    reserve_model_seq: Callable[[], int]
    save_state: Callable[[str], APIFuture[SaveWeightsResponse]]
    """A save in the client's order whose failure does not stop the calls queued behind it."""
    rest: Callable[[], RestClient]

    @property
    def recovery_child(self) -> str:
        return f"{self.child_id}-recovery"

    @property
    def checkpoints_child(self) -> str:
        return f"{self.child_id}-checkpoints"


def watch_of(port: ClientPort) -> ModelWatch:
    """The client's watch, created (and put on its ledger) the first time."""
    with _watch_lock:
        watch = port.ledger.watch
        if watch is None:
            watch = port.ledger.watch = ModelWatch(port.ledger, port.context)
        return watch


def enable_recovery(port: ClientPort, policy: RecoveryPolicy) -> None:
    """Start the client's recovery actor (or give it ``policy``): from now on a lost model is recreated."""
    watch = watch_of(port)
    with _watch_lock:
        started = watch.recovery_policy is not None
        watch.recovery_policy = policy  # what every incarnation of the actor starts with
    if started:
        port.supervisor.child(port.recovery_child).tell(UsePolicy(policy))
        return
    context, base_model, reserve = port.context, port.base_model, port.reserve_model_seq

    def start() -> Any:
        current = watch.recovery_policy
        assert current is not None
        return RecoveryActor.start(watch, context, current, base_model=base_model, reserve_model_seq=reserve)

    ref = port.supervisor.start_child(ChildSpec(port.recovery_child, start, restart=Restart.TRANSIENT),
                                      timeout=_START_TIMEOUT_S)
    watch.use_driver(ActorDriver(ref))


def recovery_status(port: ClientPort) -> RecoveryStatus:
    watch = port.ledger.watch
    failed = watch.failed if watch is not None else None
    return RecoveryStatus(
        enabled=watch is not None and watch.recovery_enabled, model_id=port.ledger.model_id,
        recovering=watch is not None and watch.recovering, recoveries=watch.reports() if watch is not None else (),
        failed=str(failed) if failed is not None else None,
        checkpoints=tuple(watch.lineage.checkpoints()) if watch is not None else ())


def stop_children(port: ClientPort, timeout: float) -> None:
    """Stop the client's recovery and checkpoint actors (the client is unloaded)."""
    for child in (port.checkpoints_child, port.recovery_child):
        try:
            port.supervisor.terminate_child(child, timeout=timeout)
        except Exception:  # never started: nothing to stop
            continue
