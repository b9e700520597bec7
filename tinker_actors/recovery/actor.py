"""RecoveryActor: the supervisor of a training client's *server-side* model.

A crashed actor is restarted by its supervisor; a model the service lost cannot be, so this actor, a child
of the client's ``clients`` supervisor (``training-K-recovery``), does for the model what a supervisor does
for an actor. The :class:`~tinker_actors.recovery.watch.ModelWatch` tells it when the model is lost (it logs
it at once), then when every request sent to it has ended; it then recreates the model from a checkpoint
with its optimizer state, following the :class:`~tinker_actors.recovery.policy.RecoveryPolicy` (attempts,
waits, which checkpoint), and tells the watch, which re-attaches the client and sends the held calls again.
Every recovery is a log line and a telemetry event; the policy's callbacks hear of each outcome. It never
blocks: the rebuild runs in the IoLoop and its outcome comes back as a message, the waits between attempts
are timers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from supervisors import ExitKind, ExitReason, NamedRef, SupervisedActor
from tinker_actors.clients.context import ClientContext
from tinker_actors.errors import ClientStoppedError, ErrorCategory, TinkerError
from tinker_actors.logs import level_enabled
from tinker_actors.recovery.lineage import SavedCheckpoint
from tinker_actors.recovery.policy import RecoveryFailedError, RecoveryPolicy, RecoveryReport
from tinker_actors.recovery.rebuild import Rebuilt, rebuild_model
from tinker_actors.recovery.watch import LostModel, ModelWatch
from tinker_actors.runtime.ioloop import Outcome
from tinker_actors.telemetry.bus import emit
from tinker_actors.types.telemetry import Severity

__all__ = ["ActorDriver", "ModelLost", "RecoveryActor", "Released", "Settled", "UsePolicy"]

log = structlog.get_logger("tinker_actors.recovery")


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ModelLost:
    lost: LostModel


@dataclass(frozen=True, slots=True)
class Settled:
    """Every request sent to the lost model has ended: what it held is known, the rebuild may start."""

    generation: int


@dataclass(frozen=True, slots=True)
class Released:
    """The watch re-attached the client to the new model and is sending the held calls again."""

    report: RecoveryReport


@dataclass(frozen=True, slots=True)
class UsePolicy:
    policy: RecoveryPolicy


@dataclass(frozen=True, slots=True)
class _Attempt:
    generation: int


@dataclass(frozen=True, slots=True)
class _Rebuilt:
    generation: int
    attempt: int
    checkpoint: SavedCheckpoint
    outcome: Outcome[Rebuilt]


class ActorDriver:
    """The watch's view of this actor: each call is a ``tell`` to whichever incarnation runs. Called on the
    IoLoop thread, it never waits there: while the actor is being restarted, a short-lived thread waits
    for the new incarnation (bounded by the name's lookup timeout)."""

    def __init__(self, ref: NamedRef) -> None:
        self._ref = ref

    def model_lost(self, lost: LostModel) -> None:
        self._tell(ModelLost(lost))

    def settled(self, generation: int) -> None:
        self._tell(Settled(generation))

    def released(self, report: RecoveryReport) -> None:
        self._tell(Released(report))

    def _tell(self, message: Any) -> None:
        try:
            self._ref.resolve(0.0).tell(message)
        except Exception:
            threading.Thread(target=self._tell_waiting, args=(message,), name="tinker-recovery-tell",
                             daemon=True).start()

    def _tell_waiting(self, message: Any) -> None:
        with contextlib.suppress(Exception):
            self._ref.tell(message)


# ---- the actor ------------------------------------------------------------------------------------

class RecoveryActor(SupervisedActor):
    """Recreates the client's model when it is lost (module docstring)."""

    def __init__(self, watch: ModelWatch, context: ClientContext, policy: RecoveryPolicy, *, base_model: str,
                 reserve_model_seq: Callable[[], int]) -> None:
        super().__init__()
        self._watch = watch
        self._context = context
        self._policy = policy
        self._base_model = base_model
        self._reserve_model_seq = reserve_model_seq
        self._lost: LostModel | None = None
        self._attempt = 0
        self._unusable: set[str] = set()  # checkpoints that failed to load during this recovery
        self._last_error: BaseException | None = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ModelLost):
            self._start(message.lost)
        elif isinstance(message, Settled):
            if self._lost is not None and message.generation == self._lost.generation and self._attempt == 0:
                self._next_attempt()
        elif isinstance(message, _Attempt):
            if self._lost is not None and message.generation == self._lost.generation:
                self._run_attempt()
        elif isinstance(message, _Rebuilt):
            self._rebuilt(message)
        elif isinstance(message, Released):
            self._released(message.report)
        elif isinstance(message, UsePolicy):
            self._policy = message.policy
        return None

    def _start(self, lost: LostModel) -> None:
        if self._lost is not None and self._lost.generation == lost.generation:
            return
        self._lost, self._attempt, self._unusable, self._last_error = lost, 0, set(), None
        self._log("warning", "recovery.started", model_id=lost.model_id, cause=lost.cause)
        self._emit("recovery.started", "WARNING", model_id=lost.model_id, cause=lost.cause)
        # The first attempt starts once every request sent to the lost model has ended (Settled).

    def _next_attempt(self) -> None:
        assert self._lost is not None
        self._attempt += 1
        wait = self._policy.wait_before(self._attempt)
        if wait > 0:
            self.send_after(wait, _Attempt(self._lost.generation))
        else:
            self._run_attempt()

    def _run_attempt(self) -> None:
        lost = self._lost
        assert lost is not None
        try:
            candidates = [c for c in self._watch.lineage.checkpoints() if c.path not in self._unusable]
            chosen = self._policy.choose(candidates)
        except Exception as error:  # the user's chooser failed: that is this attempt's failure
            self._attempt_failed(error)
            return
        if chosen is None or chosen.steps is None:
            self._give_up(self._last_error, "no checkpoint to recover from (save_state, or enable periodic "
                                            "checkpoints, before the model is lost)")
            return
        attempt, generation = self._attempt, lost.generation
        try:
            coro = rebuild_model(self._context, checkpoint=chosen.path, base_model=self._base_model,
                                 model_seq_id=self._reserve_model_seq())
            self._context.runtime.ioloop.submit_and_tell(
                coro, self.actor_ref, lambda outcome: _Rebuilt(generation, attempt, chosen, outcome))
        except Exception as error:  # the client is closing
            self._give_up(error, "the client stopped")

    def _rebuilt(self, message: _Rebuilt) -> None:
        lost = self._lost
        if lost is None or message.generation != lost.generation or message.attempt != self._attempt:
            return
        outcome = message.outcome
        if outcome.ok and outcome.value is not None:
            self._watch.recovered(lost.generation, outcome.value.model_id, message.checkpoint, message.attempt)
            return
        error = outcome.error or RuntimeError("the rebuild ended without a model")
        if isinstance(error, TinkerError) and error.category is ErrorCategory.USER:
            self._unusable.add(message.checkpoint.path)  # e.g. deleted: the next attempt tries an older one
        self._attempt_failed(error, checkpoint=message.checkpoint.path)

    def _attempt_failed(self, error: BaseException, *, checkpoint: str | None = None) -> None:
        lost = self._lost
        assert lost is not None
        self._last_error = error
        self._log("warning", "recovery.attempt_failed", model_id=lost.model_id, attempt=self._attempt,
                  attempts=self._policy.max_attempts, checkpoint=checkpoint, error=f"{type(error).__name__}: {error}")
        self._emit("recovery.attempt_failed", "WARNING", model_id=lost.model_id, attempt=self._attempt,
                   checkpoint=checkpoint, error=f"{type(error).__name__}: {error}")
        if self._attempt >= self._policy.max_attempts:
            self._give_up(error, f"{self._attempt} attempt(s) failed")
        else:
            self._next_attempt()

    def _give_up(self, error: BaseException | None, why: str) -> None:
        lost = self._lost
        assert lost is not None
        detail = f"; last error: {type(error).__name__}: {error}" if error is not None else ""
        failure = RecoveryFailedError(f"the service lost model {lost.model_id} and recovery gave up: {why}{detail}",
                                      model_id=lost.model_id, attempts=self._attempt, cause=error)
        self._lost = None
        self._log("error", "recovery.failed", model_id=lost.model_id, attempts=self._attempt, reason=why,
                  error=detail.removeprefix("; last error: ") or None)
        self._emit("recovery.failed", "ERROR", model_id=lost.model_id, attempts=self._attempt, reason=why)
        self._watch.gave_up(lost.generation, failure)
        _call_back(self._policy.on_failure, failure)

    def _released(self, report: RecoveryReport) -> None:
        self._lost = None
        fields = {"old_model_id": report.old_model_id, "new_model_id": report.new_model_id,
                  "checkpoint": report.checkpoint, "checkpoint_step": report.checkpoint_step,
                  "rolled_back_steps": list(report.rolled_back_steps), "resubmitted": report.resubmitted,
                  "resubmitted_steps": list(report.resubmitted_steps), "attempts": report.attempts,
                  "duration_s": round(report.duration_s, 3)}
        self._log("warning", "recovery.completed", **fields)
        self._emit("recovery.completed", "WARNING", cause=report.cause, **fields)
        _call_back(self._policy.on_recovery, report)

    def on_terminate(self, reason: ExitReason) -> None:
        lost = self._lost
        if lost is not None and reason.kind is not ExitKind.NORMAL:
            # No incarnation will finish this recovery: its waiting calls must not wait forever.
            self._watch.gave_up(lost.generation, RecoveryFailedError(
                f"the recovery of model {lost.model_id} stopped: its actor {reason.kind.value}",
                model_id=lost.model_id, attempts=self._attempt, cause=reason.error))
        elif lost is not None:
            self._watch.gave_up(lost.generation, ClientStoppedError(
                f"the training client was closed while it recovered its model {lost.model_id}"))

    # ---- reporting ------------------------------------------------------------------------------------

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if level_enabled(self._context.config.log_level, level):
            getattr(log, level)(event, **fields)

    def _emit(self, name: str, severity: Severity, **data: Any) -> None:
        emit(name, data, severity=severity, session_id=self._context.session_id or None)


def _call_back(callback: Callable[[Any], object] | None, value: Any) -> None:
    """The user's callback, in a thread of its own: it may take its time (or block) without holding up
    recovery, and an exception it raises is logged, never raised here."""
    if callback is None:
        return

    def run() -> None:
        try:
            callback(value)
        except Exception as error:
            log.warning("recovery.callback_failed", error=f"{type(error).__name__}: {error}")

    threading.Thread(target=run, name="tinker-recovery-callback", daemon=True).start()
