"""Lineage: which optim_steps the server-side model holds, and which each checkpoint holds.

Steps are numbered in call order (the first ``optim_step`` after the bookkeeping started is step 1, unless
told otherwise); the number of an ``optim_step`` call never changes, even when it is resubmitted to a
recreated model. Every other operation belongs to the step of the next ``optim_step`` (its *unit*): the
``forward_backward`` calls of step 7 accumulate the gradient that ``optim_step`` 7 applies.

A *generation* is one server-side model: the first one, then one per recovery. Within a generation the
operations run in the order they were sent, so what the model holds after an operation is known once
every operation sent before it on that generation has ended. The lineage folds ended operations in that
order (keeping no more than what is still unknown), freezing each checkpoint's content as it passes it.

Thread-safe: the client actor numbers operations (in mailbox order), the IoLoop reports what happened.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from tinker_actors.recovery.steps import StepSet

__all__ = ["GRADIENT_KINDS", "Lineage", "SavedCheckpoint"]

GRADIENT_KINDS = frozenset({"forward_backward", "optim_step"})
"""Operations that make or use the gradient of their step: lost with it when a model is lost mid-step."""

_MAX_CHECKPOINTS = 64  # the newest ones are the candidates: memory stays flat over a long run

EventKind = Literal["step", "gradient", "save", "load"]


@dataclass(frozen=True)
class SavedCheckpoint:
    """A ``save_state`` of this client that succeeded: a candidate to recover from."""

    path: str
    step: int
    """The number of the last ``optim_step`` submitted before the save (0: none). The checkpoint holds every
    step up to it that had not been rolled back, and no later one."""
    saved_at: float
    """When its result arrived (``time.time()``)."""
    steps: StepSet | None = None
    """Exactly the steps it holds; None while an operation sent before it has not ended."""


@dataclass
class _Op:
    kind: str
    unit: int
    step: int | None  # for an optim_step: its number
    after_step: int   # the last optim_step numbered when it was submitted
    generation: int | None = None  # where it was last sent


@dataclass(frozen=True)
class _Event:
    kind: EventKind
    number: int = 0  # the step (step), the unit (gradient), the after_step (save)
    path: str = ""


@dataclass
class _Generation:
    base: StepSet
    folded: StepSet
    inflight: set[int] = field(default_factory=set)
    pending: dict[int, _Event] = field(default_factory=dict)
    gradient_units: set[int] = field(default_factory=set)


class Lineage:
    """The steps of the current model, of the models before it, and of the checkpoints (module docstring)."""

    def __init__(self, first_step: int = 1) -> None:
        self._lock = threading.Lock()
        self._last_step = first_step - 1
        self._ops: dict[int, _Op] = {}
        self._generation = 0
        self._generations: dict[int, _Generation] = {0: _Generation(StepSet(), StepSet())}
        self._checkpoints: list[SavedCheckpoint] = []
        self._rolled_back_units: set[int] = set()

    # ---- numbering (the client actor, in mailbox order) ----------------------------------------------

    def submitted(self, op_id: int, kind: str) -> int | None:
        """Number an operation; returns its step number if it is an ``optim_step``."""
        with self._lock:
            after = self._last_step
            if kind == "optim_step":
                self._last_step += 1
                self._ops[op_id] = _Op(kind, self._last_step, self._last_step, after)
                return self._last_step
            self._ops[op_id] = _Op(kind, self._last_step + 1, None, after)
            return None

    @property
    def last_step(self) -> int:
        """The number of the last ``optim_step`` submitted."""
        with self._lock:
            return self._last_step

    def step_of(self, op_id: int) -> int | None:
        with self._lock:
            op = self._ops.get(op_id)
            return op.step if op is not None else None

    def unit_of(self, op_id: int) -> int | None:
        with self._lock:
            op = self._ops.get(op_id)
            return op.unit if op is not None else None

    def kind_of(self, op_id: int) -> str | None:
        with self._lock:
            op = self._ops.get(op_id)
            return op.kind if op is not None else None

    def rolled_back(self, op_id: int) -> int | None:
        """The step this operation can no longer complete (its gradient was lost with a model), else None."""
        with self._lock:
            op = self._ops.get(op_id)
            if op is None or op.kind not in GRADIENT_KINDS or op.unit not in self._rolled_back_units:
                return None
            return op.unit

    # ---- what happened (the IoLoop) --------------------------------------------------------------------

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def generation_of(self, op_id: int) -> int | None:
        """The model the operation was last sent to (None: not sent, or not numbered)."""
        with self._lock:
            op = self._ops.get(op_id)
            return op.generation if op is not None else None

    def sent(self, op_id: int) -> int:
        """The operation is being sent to the current model; returns that model's generation."""
        with self._lock:
            generation = self._generation
            op = self._ops.get(op_id)
            if op is None:  # submitted before the bookkeeping started: not followed
                return generation
            if op.generation is not None and op.generation in self._generations:
                self._generations[op.generation].inflight.discard(op_id)
            op.generation = generation
            self._generations[generation].inflight.add(op_id)
            return generation

    def succeeded(self, op_id: int, path: str | None = None) -> None:
        """The operation ran (its result arrived, or it was accepted and nobody waits for it)."""
        with self._lock:
            op = self._ops.get(op_id)
            if op is None or op.generation is None:
                return
            event = _event(op, path)
            gen = self._generations.get(op.generation)
            if gen is None:
                return
            if event is not None:
                gen.pending[op_id] = event
            self._end(gen, op_id)

    def ended(self, op_id: int) -> None:
        """The operation ended without an effect to record (it failed, or it will be sent again). Idempotent."""
        with self._lock:
            op = self._ops.get(op_id)
            if op is not None and op.generation is not None:
                gen = self._generations.get(op.generation)
                if gen is not None and op_id in gen.inflight:
                    self._end(gen, op_id)

    def finished(self, op_id: int) -> None:
        """The operation is over for good: its numbering is no longer needed."""
        with self._lock:
            op = self._ops.pop(op_id, None)
            if op is not None and op.generation is not None:
                gen = self._generations.get(op.generation)
                if gen is not None and op_id in gen.inflight:
                    self._end(gen, op_id)

    def _end(self, gen: _Generation, op_id: int) -> None:
        gen.inflight.discard(op_id)
        floor = min(gen.inflight) if gen.inflight else None
        for pending_id in sorted(gen.pending):
            if floor is not None and pending_id > floor:
                break
            self._fold(gen, gen.pending.pop(pending_id))

    def _fold(self, gen: _Generation, event: _Event) -> None:
        if event.kind == "step":
            gen.folded = gen.folded.with_step(event.number)
            gen.gradient_units = {unit for unit in gen.gradient_units if unit > event.number}
        elif event.kind == "gradient":
            gen.gradient_units.add(event.number)
        elif event.kind == "load":
            known = next((c.steps for c in self._checkpoints if c.path == event.path and c.steps is not None), None)
            gen.folded = known if known is not None else StepSet()
            gen.gradient_units.clear()  # a load drops the pending gradient
        else:
            self._checkpoints.append(SavedCheckpoint(event.path, event.number, time.time(), gen.folded))
            del self._checkpoints[:-_MAX_CHECKPOINTS]

    # ---- recovery ----------------------------------------------------------------------------------------

    def settled(self, generation: int) -> bool:
        """No operation sent to that model is still out (what it holds is known)."""
        with self._lock:
            gen = self._generations.get(generation)
            return gen is None or not gen.inflight

    def content(self, generation: int) -> StepSet:
        """The steps that model held when its last known operation ended."""
        with self._lock:
            return self._generations[generation].folded

    def checkpoints(self) -> list[SavedCheckpoint]:
        """The checkpoints whose content is known, oldest first."""
        with self._lock:
            return list(self._checkpoints)

    def forget(self, path: str) -> None:
        """A checkpoint was deleted: it is no longer a candidate."""
        with self._lock:
            self._checkpoints = [c for c in self._checkpoints if c.path != path]

    def new_generation(self, lost: int, restored: StepSet) -> tuple[int, StepSet]:
        """A model restored to ``restored`` replaces generation ``lost``. Returns the new generation and the
        steps whose gradient was lost with the old model (their calls can no longer complete)."""
        with self._lock:
            old = self._generations[lost]
            units = StepSet.of(old.gradient_units)
            self._rolled_back_units.update(old.gradient_units)
            self._generation += 1
            self._generations[self._generation] = _Generation(restored, restored)
            # Older generations are settled by now: only their content could still be asked for.
            for number in [g for g in self._generations if g < lost]:
                del self._generations[number]
            return self._generation, units


def _event(op: _Op, path: str | None) -> _Event | None:
    if op.kind == "optim_step" and op.step is not None:
        return _Event("step", op.step)
    if op.kind == "forward_backward":
        return _Event("gradient", op.unit)
    if op.kind == "save_weights" and path:
        return _Event("save", op.after_step, path)
    if op.kind == "load_weights":
        return _Event("load", path=path or "")
    return None
