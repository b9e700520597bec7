"""ModelWatch: what a training client's operations go through when checkpoints or recovery are enabled.

It sits on the client's :class:`~tinker_actors.clients.ledger.TrainingLedger` (``ledger.watch``), so it
outlives restarts of the client's actor, and keeps the :class:`~tinker_actors.recovery.lineage.Lineage`.

With recovery on it is also the *gate* every send passes (on the IoLoop thread, where the sends run):

1. An operation whose answer says its model is lost (:mod:`tinker_actors.recovery.signals`) is **held**,
   not failed, and recovery starts: every later send waits at the gate.
2. The recovery actor (:mod:`tinker_actors.recovery.actor`) is told at once (it logs it); once every operation
   sent to the lost model has ended (held too, or with its real outcome), it is told again, and recreates the
   model from a checkpoint.
3. Then the held operations go out again **one at a time, in their original order** (each after the previous
   one was accepted), to the new model, re-targeted; calls that belonged to a step whose gradient was lost
   fail with :class:`StepRolledBackError` instead. Then sends flow as before.
4. If recovery gives up, the held operations and every later one fail with :class:`RecoveryFailedError`.

Calls the server ran are never sent again; a call whose outcome was lost with the model is sent once more,
to the new model, whose state is the checkpoint's: it cannot be applied twice to the model that survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from tinker_actors.errors import ClientStoppedError, TinkerError
from tinker_actors.recovery.lineage import Lineage, SavedCheckpoint
from tinker_actors.recovery.policy import RecoveryFailedError, RecoveryPolicy, RecoveryReport, StepRolledBackError
from tinker_actors.recovery.rebuild import FIRST_SEQ_ID_AFTER_LOAD
from tinker_actors.recovery.signals import Signal, classify, model_is_lost

if TYPE_CHECKING:
    from tinker_actors.clients.context import ClientContext
    from tinker_actors.clients.ledger import TrainingLedger
    from tinker_actors.wire import EncodedRequest

__all__ = ["LostModel", "ModelWatch", "RecoveryDriver", "WatchedOp"]

_MAX_REPORTS = 100


class WatchedOp(Protocol):
    """What the watch reads of an operation (``TrainingOp``)."""

    @property
    def kind(self) -> str: ...

    @property
    def model_id(self) -> str: ...

    @property
    def retarget(self) -> Callable[[str], Callable[[int], EncodedRequest]] | None: ...


class LostModel:
    """What the recovery actor is told: this model was lost (and, later, that everything sent to it has ended)."""

    __slots__ = ("cause", "generation", "model_id")

    def __init__(self, generation: int, model_id: str, cause: str) -> None:
        self.generation = generation
        self.model_id = model_id
        self.cause = cause


class RecoveryDriver(Protocol):
    """The recovery actor, as the watch sees it (thread-safe: each call is a ``tell``)."""

    def model_lost(self, lost: LostModel) -> None: ...

    def settled(self, generation: int) -> None: ...

    def released(self, report: RecoveryReport) -> None: ...


class _Phase(Enum):
    NORMAL = "normal"
    SETTLING = "settling"      # the model is lost; waiting for what was sent to it to end
    REBUILDING = "rebuilding"  # the recovery actor recreates it
    RELEASING = "releasing"    # the held operations go out again, one at a time, in order


class ModelWatch:
    """See the module docstring. IoLoop-thread methods are marked; the others are thread-safe."""

    def __init__(self, ledger: TrainingLedger, context: ClientContext, *, first_step: int = 1) -> None:
        self._ledger = ledger
        self._context = context
        self.lineage = Lineage(first_step)
        self._lock = threading.Lock()  # guards the fields the caller's thread reads (status)
        self._driver: RecoveryDriver | None = None
        self.recovery_policy: RecoveryPolicy | None = None  # set when recovery is enabled
        self._step_listener: Callable[[int], None] | None = None
        # IoLoop thread only:
        self._phase = _Phase.NORMAL
        self._lost_generation: int | None = None
        self._cause = ""
        self._started = 0.0
        self._held: dict[int, asyncio.Future[None]] = {}  # operations waiting at the gate for their turn
        self._lost_ops: set[int] = set()  # those among them that had been sent to the lost model
        self._turn: int | None = None
        self._failed: TinkerError | None = None
        self._reports: deque[RecoveryReport] = deque(maxlen=_MAX_REPORTS)

    # ---- set-up (any thread) -------------------------------------------------------------------------

    @property
    def recovery_enabled(self) -> bool:
        return self._driver is not None

    def use_driver(self, driver: RecoveryDriver | None) -> None:
        self._driver = driver

    @property
    def has_step_listener(self) -> bool:
        return self._step_listener is not None

    def on_step(self, listener: Callable[[int], None] | None) -> None:
        """``listener(step)`` is called (on the client actor's thread) each time an optim_step succeeded."""
        self._step_listener = listener

    # ---- the client actor's thread -------------------------------------------------------------------

    def submitted(self, op_id: int, kind: str) -> None:
        self.lineage.submitted(op_id, kind)

    def step_completed(self, step: int) -> None:
        listener = self._step_listener
        if listener is not None:
            listener(step)

    # ---- the IoLoop thread: what an operation's coroutine calls ------------------------------------------

    async def before_send(self, op_id: int, op: WatchedOp,
                          build: Callable[[int], EncodedRequest]) -> Callable[[int], EncodedRequest]:
        """Wait for this operation's turn while a recovery runs; the request to send (for the current model)."""
        if self._driver is None:
            return build
        if self._failed is not None:
            raise self._failure()
        if self._phase is not _Phase.NORMAL or self._held:
            turn = self._held.get(op_id)
            if turn is None:
                turn = self._held[op_id] = asyncio.get_running_loop().create_future()
            self._release_next()
            try:
                await turn
            except asyncio.CancelledError:
                self._held.pop(op_id, None)
                self._release_next()
                raise
        step = self.lineage.rolled_back(op_id)
        if step is not None:
            self._end_turn(op_id)
            report = self._reports[-1] if self._reports else None
            raise StepRolledBackError(
                f"{op.kind} was not sent: step {step} was rolled back when the model was lost (its gradient was "
                f"lost with it); re-run the step's data", step=step, report=report)
        model_id = self._ledger.model_id
        if op.model_id and op.model_id != model_id:
            if op.retarget is None:
                self._end_turn(op_id)
                raise self._failure(f"{op.kind} cannot be sent to the recreated model {model_id}")
            build = await asyncio.to_thread(op.retarget, model_id)
        return build

    def sending(self, op_id: int) -> None:
        """The operation passed the send gate (``begin_send``): it goes to the current model."""
        self.lineage.sent(op_id)

    def accepted(self, op_id: int) -> None:
        """The server accepted the operation: the next held one may go."""
        self._end_turn(op_id)

    def succeeded(self, op_id: int, result: Any = None) -> None:
        """The operation ran (its result arrived, or it was accepted and nobody waits for its result)."""
        path = getattr(result, "path", None)
        self.lineage.succeeded(op_id, path if isinstance(path, str) else None)
        self._check_settled()

    async def lost(self, op_id: int, op: WatchedOp, error: BaseException, *, accepted: bool) -> bool:
        """Whether ``error`` means the model was lost: then the operation is held to be sent again (True)."""
        if self._driver is None or self._failed is not None:
            return False
        if isinstance(error, ClientStoppedError) or not isinstance(error, TinkerError):
            return False
        generation = self.lineage.generation_of(op_id)
        if generation is None:
            return False
        if not self._recovering(generation):
            if generation != self.lineage.generation:
                return False
            signal = classify(error, accepted=accepted)
            if signal is None:
                return False
            if signal is Signal.PROBE and not await model_is_lost(self._context, self._ledger.model_id) \
                    and not self._recovering(generation):
                return False
            if not self._recovering(generation):
                self._begin(generation, op, error)
        self._end_turn(op_id)
        self._held.setdefault(op_id, asyncio.get_running_loop().create_future())
        self._lost_ops.add(op_id)
        self.lineage.ended(op_id)
        self._check_settled()
        return True

    def op_ended(self, op_id: int, succeeded: bool) -> int | None:
        """The operation is over (any outcome). Returns its step number if it was an optim_step that succeeded."""
        step = self.lineage.step_of(op_id) if succeeded else None
        self.lineage.finished(op_id)
        turn = self._held.pop(op_id, None)
        if turn is not None and not turn.done():
            turn.cancel()
        self._lost_ops.discard(op_id)
        self._end_turn(op_id)
        self._check_settled()
        return step

    # ---- the recovery actor (any thread; run on the IoLoop) ------------------------------------------

    def recovered(self, generation: int, model_id: str, checkpoint: SavedCheckpoint, attempts: int) -> None:
        self._call_soon(lambda: self._recovered(generation, model_id, checkpoint, attempts))

    def gave_up(self, generation: int, error: TinkerError) -> None:
        """Recovery ended without a model: the held calls and every later one fail with ``error``
        (a :class:`RecoveryFailedError`, or :class:`ClientStoppedError` when the client was closed meanwhile)."""
        self._call_soon(lambda: self._gave_up(generation, error))

    def _call_soon(self, action: Callable[[], None]) -> None:
        with contextlib.suppress(Exception):  # the IoLoop is stopping: so is this client
            self._context.runtime.ioloop.call_soon(action)

    # ---- status (any thread) -----------------------------------------------------------------------------

    def reports(self) -> tuple[RecoveryReport, ...]:
        with self._lock:
            return tuple(self._reports)

    @property
    def recovering(self) -> bool:
        return self._phase is not _Phase.NORMAL

    @property
    def failed(self) -> TinkerError | None:
        return self._failed

    # ---- the IoLoop thread: the recovery's phases -----------------------------------------------------------

    def _recovering(self, generation: int) -> bool:
        return self._phase in (_Phase.SETTLING, _Phase.REBUILDING) and generation == self._lost_generation

    def _begin(self, generation: int, op: WatchedOp, error: BaseException) -> None:
        self._phase = _Phase.SETTLING
        self._lost_generation = generation
        self._cause = f"{op.kind}: {type(error).__name__}: {error}"
        self._started = time.monotonic()
        driver = self._driver
        if driver is not None:
            driver.model_lost(LostModel(generation, self._ledger.model_id, self._cause))

    def _check_settled(self) -> None:
        if self._phase is not _Phase.SETTLING or self._lost_generation is None:
            return
        if not self.lineage.settled(self._lost_generation):
            return
        self._phase = _Phase.REBUILDING
        driver = self._driver
        if driver is not None:
            driver.settled(self._lost_generation)

    def _recovered(self, generation: int, model_id: str, checkpoint: SavedCheckpoint, attempts: int) -> None:
        if self._phase is not _Phase.REBUILDING or generation != self._lost_generation:
            return
        assert checkpoint.steps is not None
        lost_content = self.lineage.content(generation)
        old_model_id = self._ledger.model_id
        _, lost_gradients = self.lineage.new_generation(generation, checkpoint.steps)
        self._ledger.move_to(model_id, FIRST_SEQ_ID_AFTER_LOAD)
        rolled_back = sorted(set(lost_content.minus(checkpoint.steps)) | set(lost_gradients))
        again = [op_id for op_id in self._lost_ops if op_id in self._held and self.lineage.rolled_back(op_id) is None]
        self._lost_ops.clear()
        steps = sorted(step for op_id in again if (step := self.lineage.step_of(op_id)) is not None)
        report = RecoveryReport(
            old_model_id=old_model_id, new_model_id=model_id, checkpoint=checkpoint.path,
            checkpoint_step=checkpoint.step, rolled_back_steps=tuple(rolled_back), resubmitted=len(again),
            resubmitted_steps=tuple(steps), attempts=attempts, cause=self._cause,
            duration_s=time.monotonic() - self._started)
        with self._lock:
            self._reports.append(report)
        self._phase = _Phase.RELEASING
        self._lost_generation = None
        self._turn = None
        driver = self._driver
        if driver is not None:
            driver.released(report)
        self._release_next()

    def _gave_up(self, generation: int, error: TinkerError) -> None:
        if not self._recovering(generation):
            return
        self._failed = error
        self._phase = _Phase.NORMAL
        self._lost_generation = None
        held, self._held = self._held, {}
        self._lost_ops.clear()
        for turn in held.values():
            if not turn.done():
                turn.set_exception(self._failure())

    def _release_next(self) -> None:
        if self._phase is not _Phase.RELEASING or self._turn is not None:
            return
        while self._held:
            op_id = min(self._held)
            turn = self._held.pop(op_id)
            if turn.done():  # its caller gave up meanwhile
                continue
            self._turn = op_id
            turn.set_result(None)
            return
        self._phase = _Phase.NORMAL

    def _end_turn(self, op_id: int) -> None:
        if self._turn == op_id:
            self._turn = None
            self._release_next()

    def _failure(self, message: str | None = None) -> TinkerError:
        """A fresh error per call (one exception object raised in many places would mix their tracebacks)."""
        failed = self._failed
        if isinstance(failed, RecoveryFailedError):
            return RecoveryFailedError(message or str(failed), model_id=failed.model_id, attempts=failed.attempts,
                                       cause=failed.cause, rolled_back_steps=failed.rolled_back_steps)
        if failed is not None:
            return ClientStoppedError(message or str(failed))
        return RecoveryFailedError(message or "the model was lost", model_id=self._ledger.model_id, attempts=0)
