"""Periodic checkpoints: an opt-in policy on a TrainingClient, run by an actor of its own (docs/guides/recovery.md).

``training.enable_periodic_checkpoints(CheckpointPolicy(every_steps=100, keep_last=3))`` starts a
:class:`CheckpointPolicyActor` next to the client's actor (``training-K-checkpoints``, under the same
``clients`` supervisor). The client's actor tells it each time an ``optim_step`` succeeded; every
``every_steps`` steps and/or every ``every_seconds`` seconds (with at least one new step) it asks the client
for a ``save_state``, which takes its place in the client's ordered stream of calls like any other (so the
checkpoint holds a consistent state: every call before it, none after), and never makes a training call wait.

After a save: its TTL is set (``ttl_seconds``, through the REST API) and the policy's checkpoints beyond the
newest ``keep_last`` are deleted (through the REST API). A failure (to save, set a TTL or delete) is never
raised into the training loop: a queued save that fails does not stop the calls behind it; the failure is a
log line (``checkpoint.save_failed`` ...), a telemetry event of the same name, and counted in
``training.checkpoint_status()``. The next save is tried on the next period.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from supervisors import (
    ChildNotRunning,
    ChildSpec,
    ExitReason,
    NameLookupTimeout,
    Restart,
    SupervisedActor,
    SupervisorNotRunning,
    Timer,
)
from tinker_actors.errors import ClientStoppedError, InvalidInputError
from tinker_actors.logs import level_enabled
from tinker_actors.runtime.ioloop import Outcome
from tinker_actors.telemetry.bus import emit

if TYPE_CHECKING:
    from tinker_actors.recovery.port import ClientPort
    from tinker_actors.recovery.watch import ModelWatch
    from tinker_actors.types.telemetry import Severity

__all__ = ["CheckpointPolicy", "CheckpointPolicyActor", "CheckpointStatus", "PeriodicCheckpoint", "StatusQuery",
           "StepCompleted", "checkpoint_status", "enable_periodic_checkpoints"]

log = structlog.get_logger("tinker_actors.checkpoints")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
_MAX_TICK_S = 1.0
_STATUS_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to save, how long to keep. At least one of ``every_steps`` / ``every_seconds``.

    ``keep_last``: how many of the policy's checkpoints to keep (older ones are deleted; None keeps all).
    ``ttl_seconds``: a time to live set on each checkpoint (None: the service's default, kept until deleted).
    ``name_prefix``: checkpoints are named ``<prefix>-<step:06d>``.
    """

    every_steps: int | None = None
    every_seconds: float | None = None
    keep_last: int | None = 3
    ttl_seconds: int | None = None
    name_prefix: str = "periodic"

    def __post_init__(self) -> None:
        if self.every_steps is None and self.every_seconds is None:
            raise InvalidInputError("CheckpointPolicy needs every_steps, every_seconds, or both")
        for name in ("every_steps", "keep_last", "ttl_seconds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"CheckpointPolicy.{name} must be an integer >= 1 (or None), got {value!r}")
        seconds = self.every_seconds
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                    or not math.isfinite(seconds) or seconds <= 0):
            raise InvalidInputError(f"CheckpointPolicy.every_seconds must be a number > 0 (or None), got {seconds!r}")
        if not isinstance(self.name_prefix, str) or not _NAME.match(self.name_prefix):
            raise InvalidInputError("CheckpointPolicy.name_prefix must be 1-81 letters, digits, '.', '_' or '-' "
                                    f"(starting with a letter or digit), got {self.name_prefix!r}")


@dataclass(frozen=True)
class PeriodicCheckpoint:
    path: str
    step: int
    """The last step that had completed when the save was asked for."""
    saved_at: float
    """``time.time()`` when the save's result arrived."""


@dataclass(frozen=True)
class CheckpointStatus:
    """``TrainingClient.checkpoint_status()``."""

    policy: CheckpointPolicy
    kept: tuple[PeriodicCheckpoint, ...]
    """The policy's checkpoints that were not deleted, oldest first."""
    last_step: int
    """The last step seen to complete."""
    saving: bool
    saves: int
    save_failures: int
    ttl_failures: int
    delete_failures: int
    last_error: str | None


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StepCompleted:
    """From the client's actor: optim_step ``step`` succeeded."""

    step: int


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """Ask: the :class:`CheckpointStatus`."""


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Saved:
    name: str
    step: int
    outcome: Outcome[Any]


@dataclass(frozen=True, slots=True)
class _Followed:
    """A TTL setting or a deletion ended."""

    action: str  # "ttl" | "delete"
    path: str
    outcome: Outcome[Any]


# ---- the actor ------------------------------------------------------------------------------------

class CheckpointPolicyActor(SupervisedActor):
    """Decides when to save and what to delete; owns the list of the policy's checkpoints (module docstring)."""

    def __init__(self, port: ClientPort, watch: ModelWatch, policy: CheckpointPolicy) -> None:
        super().__init__()
        self._port = port
        self._watch = watch
        self._policy = policy
        self._kept: list[PeriodicCheckpoint] = []
        self._to_delete: list[str] = []  # deletions that failed: tried again after the next save
        self._last_step = 0
        self._steps_since_save = 0
        self._last_save_at = time.monotonic()
        self._saving = False
        self._saved_names: set[str] = set()
        self._saves = self._save_failures = self._ttl_failures = self._delete_failures = 0
        self._last_error: str | None = None
        self._timer: Timer | None = None

    def on_init(self) -> None:
        seconds = self._policy.every_seconds
        if seconds is not None:
            self._timer = self.send_interval(min(_MAX_TICK_S, max(0.05, seconds / 4)), _Tick())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StepCompleted):
            self._step_completed(message.step)
        elif isinstance(message, _Tick):
            self._tick()
        elif isinstance(message, _Saved):
            self._saved(message)
        elif isinstance(message, _Followed):
            self._followed(message)
        elif isinstance(message, StatusQuery):
            return self._status()
        return None

    def _step_completed(self, step: int) -> None:
        self._last_step = max(self._last_step, step)
        self._steps_since_save += 1
        every = self._policy.every_steps
        if every is not None and self._steps_since_save >= every:
            self._save()

    def _tick(self) -> None:
        seconds = self._policy.every_seconds
        if seconds is not None and self._steps_since_save > 0 and time.monotonic() - self._last_save_at >= seconds:
            self._save()

    def _save(self) -> None:
        if self._saving:
            return  # one at a time; the next period asks again
        name = f"{self._policy.name_prefix}-{self._last_step:06d}"
        if name in self._saved_names:
            return
        step, actor = self._last_step, self.actor_ref
        self._steps_since_save = 0
        self._last_save_at = time.monotonic()
        try:
            future = self._port.save_state(name)
        except Exception as error:  # the client is stopping
            self._failed("save", name, error)
            return
        self._saving = True
        self._saved_names.add(name)

        # Through the APIFuture: the callback holds it, so its result is polled (a dropped one is not).
        future.add_done_callback(lambda ended: _tell(actor, _Saved(name, step, Outcome.of(ended.raw))))

    def _saved(self, message: _Saved) -> None:
        self._saving = False
        outcome = message.outcome
        if not outcome.ok or outcome.value is None:
            self._saved_names.discard(message.name)
            self._failed("save", message.name, outcome.error)
            return
        path = outcome.value.path
        self._saves += 1
        self._kept.append(PeriodicCheckpoint(path, message.step, time.time()))
        self._log("info", "checkpoint.saved", path=path, step=message.step)
        self._emit("checkpoint.saved", "INFO", path=path, step=message.step)
        ttl = self._policy.ttl_seconds
        if ttl is not None:
            self._follow("ttl", path, lambda rest: rest.set_checkpoint_ttl_from_tinker_path(path, ttl))
        keep = self._policy.keep_last
        while keep is not None and len(self._kept) > keep:
            oldest = self._kept.pop(0)
            self._watch.lineage.forget(oldest.path)  # at once: recovery must not pick a checkpoint being deleted
            self._to_delete.append(oldest.path)
        for doomed in self._to_delete:
            self._follow("delete", doomed, lambda rest, doomed=doomed: rest.delete_checkpoint_from_tinker_path(doomed))
        self._to_delete = []

    def _follow(self, action: str, path: str, call: Any) -> None:
        actor = self.actor_ref
        try:
            future = call(self._port.rest())
        except Exception as error:
            self._followed(_Followed(action, path, Outcome(error=error)))
            return
        future.add_done_callback(lambda ended: _tell(actor, _Followed(action, path, Outcome.of(ended.raw))))

    def _followed(self, message: _Followed) -> None:
        if message.outcome.ok:
            if message.action == "delete":
                self._log("info", "checkpoint.deleted", path=message.path)
            return
        if message.action == "delete":
            self._delete_failures += 1
            self._to_delete.append(message.path)
            del self._to_delete[:-100]  # a service that refuses every deletion does not grow this forever
        else:
            self._ttl_failures += 1
        self._failed("ttl" if message.action == "ttl" else "delete", message.path, message.outcome.error)

    def _failed(self, what: str, name: str, error: BaseException | None) -> None:
        if what == "save":
            self._save_failures += 1
        text = f"{type(error).__name__}: {error}" if error is not None else "no result"
        self._last_error = f"{what} {name}: {text}"
        event = {"save": "checkpoint.save_failed", "ttl": "checkpoint.ttl_failed",
                 "delete": "checkpoint.delete_failed"}[what]
        self._log("warning", event, checkpoint=name, error=text)
        self._emit(event, "WARNING", checkpoint=name, error=text)

    def _status(self) -> CheckpointStatus:
        return CheckpointStatus(policy=self._policy, kept=tuple(self._kept), last_step=self._last_step,
                                saving=self._saving, saves=self._saves, save_failures=self._save_failures,
                                ttl_failures=self._ttl_failures, delete_failures=self._delete_failures,
                                last_error=self._last_error)

    def on_terminate(self, reason: ExitReason) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if level_enabled(self._port.context.config.log_level, level):
            getattr(log, level)(event, model_id=self._port.ledger.model_id, **fields)

    def _emit(self, name: str, severity: Severity, **data: Any) -> None:
        context = self._port.context
        emit(name, {"model_id": self._port.ledger.model_id, **data}, severity=severity,
             session_id=context.session_id or None)


def _tell(actor: Any, message: Any) -> None:
    try:
        actor.tell(message)
    except Exception:  # the policy was stopped: nobody is left to care
        return


# ---- switching it on ------------------------------------------------------------------------------

def enable_periodic_checkpoints(port: ClientPort, policy: CheckpointPolicy) -> None:
    """Start (or restart, with a new policy) the client's checkpoint policy actor."""
    from tinker_actors.recovery.port import watch_of

    if not isinstance(policy, CheckpointPolicy):
        raise InvalidInputError(f"expected a CheckpointPolicy, got {type(policy).__name__}")
    watch = watch_of(port)
    child = port.checkpoints_child
    with contextlib.suppress(Exception):  # a new policy replaces the old one (if there was one)
        port.supervisor.terminate_child(child, timeout=_START_TIMEOUT_S)
    ref = port.supervisor.start_child(
        ChildSpec(child, lambda: CheckpointPolicyActor.start(port, watch, policy), restart=Restart.TRANSIENT),
        timeout=_START_TIMEOUT_S)
    watch.on_step(lambda step: _tell_named(ref, StepCompleted(step)))


def _tell_named(ref: Any, message: Any) -> None:
    try:
        ref.resolve(0.0).tell(message)
    except Exception:  # restarting, or stopped: one step less counted
        return


def checkpoint_status(port: ClientPort) -> CheckpointStatus | None:
    """The policy's status (None when no policy was enabled)."""
    watch = port.ledger.watch
    if watch is None or not watch.has_step_listener:
        return None
    try:
        status: CheckpointStatus = port.supervisor.child(port.checkpoints_child).ask(StatusQuery(),
                                                                                     timeout=_STATUS_TIMEOUT_S)
    except (ChildNotRunning, SupervisorNotRunning, NameLookupTimeout) as gone:
        # the client was closed, or its supervisor gave up after too many crashes: typed, not a supervision error
        raise ClientStoppedError(f"the periodic checkpoint policy is not running anymore ({gone})") from None
    return status
