"""Losing models on purpose: the faults a recovering training client is tested against (issue 14).

Three ways the service loses a model, each as the client would see it in real life:

* **drop**: the service forgets the model, as when the machine holding it dies. Requests that name it
  answer 404 ("model ... is not available: it was lost by the service"); requests already queued for it
  fail with a ``server`` error; its training run reports ``corrupted: true``. Checkpoints are kept.
* **corrupt**: the model is still there but broken. Requests are accepted and every one of them fails
  with a ``server`` error; its training run reports ``corrupted: true``.
* **restart** (:meth:`LocalService.restart`, the ``restart`` fault rule, ``POST /local/v1/restart``): every
  loaded model is lost with the service's memory; :meth:`ModelFaults.detach` marks their runs
  ``corrupted: true`` on the way down. Runs, checkpoints and sessions are kept on disk.

:class:`ModelFaults` is the thread-safe control a :class:`LocalService` keeps across restarts: tests call it
from their own thread, and it runs each change on the service loop, where the state lives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from tinker_actors.local.engine.backend import AdamSettings, Arrays, DatumInput, SamplerEngine, StepOutput
from tinker_actors.local.engine.state import ApiError, Call, ModelSlot, ServiceState

__all__ = ["LostModelError", "ModelFaults", "ModelState", "corrupt_model", "drop_model", "lose_named_model",
           "mark_loaded_models_lost", "model_states"]

T = TypeVar("T")
_CONTROL_TIMEOUT_S = 30.0
ModelStatus = Literal["creating", "ready", "corrupted", "lost", "unloaded"]


class LostModelError(RuntimeError):
    """What every operation of a dropped or corrupted model raises (a ``server`` error for the client)."""


class _BrokenTrainer:
    """Stands in for a model the service lost or broke: every operation fails."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput:
        raise LostModelError(self.reason)

    def optim_step(self, adam: AdamSettings) -> dict[str, float]:
        raise LostModelError(self.reason)

    def state(self, *, with_optimizer: bool) -> Arrays:
        raise LostModelError(self.reason)

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None:
        raise LostModelError(self.reason)

    def sampler(self) -> SamplerEngine:
        raise LostModelError(self.reason)


@dataclass(frozen=True)
class ModelState:
    """One model the service knows in memory (``GET /local/v1/models``)."""

    model_id: str
    session_id: str
    base_model: str
    owner: str
    status: ModelStatus
    optimizer_step: int | None
    """How many optim_steps the model's optimizer has taken (read in the model's order of operations);
    None when it cannot be read (lost, corrupted, unloaded, still being created)."""

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "session_id": self.session_id, "base_model": self.base_model,
                "owner": self.owner, "status": self.status, "optimizer_step": self.optimizer_step}


def _mark_run_corrupted(state: ServiceState, model_id: str) -> None:
    run = state.storage.run(model_id)
    if run is not None and not run.corrupted:
        state.storage.add_run(replace(run, corrupted=True))


def _live_slot(state: ServiceState, model_id: str) -> ModelSlot | None:
    slot = state.models.get(model_id)
    if slot is None or slot.gone is not None or not slot.ready.is_set() or slot.trainer is None:
        return None
    return slot


def drop_model(state: ServiceState, model_id: str) -> bool:
    """Forget a ready model (on the service loop). False if there is no such ready model."""
    slot = _live_slot(state, model_id)
    if slot is None:
        return False
    slot.trainer = _BrokenTrainer(f"model {model_id} was lost by the service (dropped by a fault)")
    slot.gone = "it was lost by the service (dropped by a fault); load a checkpoint into a new model"
    _mark_run_corrupted(state, model_id)
    return True


def corrupt_model(state: ServiceState, model_id: str) -> bool:
    """Break a ready model (on the service loop): requests are accepted and fail. False if no such ready model."""
    slot = _live_slot(state, model_id)
    if slot is None or isinstance(slot.trainer, _BrokenTrainer):
        return False
    slot.trainer = _BrokenTrainer(f"model {model_id} is corrupted (injected fault)")
    _mark_run_corrupted(state, model_id)
    return True


def lose_named_model(state: ServiceState, call: Call, *, corrupt: bool) -> bool:
    """For the ``drop_model`` / ``corrupt_model`` fault rules: lose the model the request's JSON body names
    (a protobuf body names none: nothing happens). False when nothing was lost."""
    try:
        model_id = call.raw_field("model_id")
    except ApiError:
        return False
    if not isinstance(model_id, str):
        return False
    return corrupt_model(state, model_id) if corrupt else drop_model(state, model_id)


def mark_loaded_models_lost(state: ServiceState) -> list[str]:
    """The service is going down with its memory: every loaded model's run reports ``corrupted: true``."""
    lost = [slot.model_id for slot in state.models.values()
            if slot.gone is None and slot.trainer is not None and not isinstance(slot.trainer, _BrokenTrainer)]
    for model_id in lost:
        _mark_run_corrupted(state, model_id)
    return lost


def _status(slot: ModelSlot) -> ModelStatus:
    if isinstance(slot.trainer, _BrokenTrainer):
        return "lost" if slot.gone is not None else "corrupted"
    if slot.gone is not None:
        return "unloaded"
    return "ready" if slot.ready.is_set() and slot.trainer is not None else "creating"


async def _optimizer_step(state: ServiceState, slot: ModelSlot) -> int | None:
    """The model's Adam step count, read as one of its operations (never while another one runs)."""
    answer: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def read() -> None:
        trainer = slot.trainer
        try:
            if trainer is None or isinstance(trainer, _BrokenTrainer):
                value = None
            else:
                arrays = await state.run_blocking(lambda: trainer.state(with_optimizer=True))
                value = int(arrays["adam.step"]) if "adam.step" in arrays else 0
        except Exception:
            value = None
        if not answer.done():
            answer.set_result(value)

    slot.sequencer.submit(None, "admin_models", "", read)
    return await answer


async def model_states(state: ServiceState, user: str | None = None) -> list[ModelState]:
    """Every model in memory (``user``'s only, when given), with its optimizer step where readable."""
    states = []
    for slot in list(state.models.values()):
        if user is not None and slot.owner != user:
            continue
        status = _status(slot)
        step = await _optimizer_step(state, slot) if status == "ready" else None
        states.append(ModelState(slot.model_id, slot.session_id, slot.base_model, slot.owner, status, step))
    return states


class ModelFaults:
    """``svc.faults.drop_model(...)`` and friends, from any thread, on whichever incarnation of the service
    runs (attached when it starts, detached when it stops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: ServiceState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, state: ServiceState, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._state, self._loop = state, loop

    def detach(self, state: ServiceState) -> list[str]:
        """The service stops (on its loop): its loaded models are lost; returns their ids."""
        with self._lock:
            if self._state is state:
                self._state, self._loop = None, None
        return mark_loaded_models_lost(state)

    def drop_model(self, model_id: str) -> bool:
        """Forget a ready model now (see the module's docstring); False if the service has no such ready model."""
        return self._run(lambda state: _on_loop(drop_model, state, model_id))

    def corrupt_model(self, model_id: str) -> bool:
        """Break a ready model now; False if the service has no such ready model."""
        return self._run(lambda state: _on_loop(corrupt_model, state, model_id))

    def model_states(self) -> list[ModelState]:
        return self._run(model_states)

    def _run(self, work: Callable[[ServiceState], Coroutine[Any, Any, T]]) -> T:
        with self._lock:
            state, loop = self._state, self._loop
        if state is None or loop is None:
            raise RuntimeError("the local service is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(work(state), loop)
        return future.result(_CONTROL_TIMEOUT_S)


async def _on_loop(change: Callable[[ServiceState, str], bool], state: ServiceState, model_id: str) -> bool:
    """``change`` runs here, on the service loop (a coroutine's body runs where it is awaited)."""
    return change(state, model_id)
