"""GradNormTracker: one supervised actor keeps the gradient-norm history of every custom-loss step (T6).

Every norm is the L2 norm of a gradient *with respect to the target-token logprobs* (all datums flattened),
not with respect to model parameters: the base loss's, each regularizer's (raw, and weighted: weight * raw),
and the total's — the norm of the composed gradient, so terms that cancel show up as a smaller total, not
as a sum of norms. The custom-loss path computes them from the per-term gradients it already has (no extra
passes) and *tells* this actor one :class:`GradNormReport` per step; it never waits on it, so a crash here
(the root supervisor restarts the actor, losing its history) can never break training.

The actor keeps a bounded history per model, running summary statistics, and flags a spike when a step's
total norm exceeds ``spike_factor`` * the median of the previous ``spike_window`` totals. Each report and
each spike is emitted as a telemetry event (``grad_norm.report``, ``grad_norm.spike``). The actor fills
the runtime's ``grad_norm_tracker`` slot.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisors import ChildSpec, Restart, SupervisedActor
from tinker_actors.runtime.slots import register_slot

if TYPE_CHECKING:
    from tinker_actors.runtime import Runtime

__all__ = [
    "GetGradNormHistory",
    "GetGradNormSummary",
    "GradNormRecord",
    "GradNormReport",
    "GradNormSummary",
    "GradNormTracker",
    "NormStats",
    "TelemetryHook",
    "TermNorm",
    "set_telemetry_hook",
]

logger = logging.getLogger(__name__)


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TermNorm:
    """A regularizer's gradient norm: ``raw`` = ‖∇R‖, ``weighted`` = weight * ‖∇R‖ = ‖∇(weight·R)‖."""

    name: str
    weight: float
    value: float
    raw: float
    weighted: float


@dataclass(frozen=True, slots=True)
class GradNormReport:
    """Tell: the norms of one custom-loss step of ``model_id``."""

    model_id: str
    loss: float
    base: float
    terms: tuple[TermNorm, ...]
    total: float
    session_id: str | None = None
    """Routes the telemetry events to that session's upload (None: local only)."""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class GetGradNormHistory:
    """Ask: the last ``last`` records of ``model_id`` (all kept ones if None), oldest first."""

    model_id: str
    last: int | None = None


@dataclass(frozen=True, slots=True)
class GetGradNormSummary:
    """Ask: the :class:`GradNormSummary` of ``model_id`` (None if it never reported)."""

    model_id: str


# ---- replies --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GradNormRecord:
    step: int
    report: GradNormReport
    spike: bool


@dataclass(frozen=True, slots=True)
class NormStats:
    count: int
    mean: float
    std: float
    min: float
    max: float
    last: float


@dataclass(frozen=True, slots=True)
class GradNormSummary:
    steps: int
    spikes: int
    total: NormStats
    base: NormStats
    terms: dict[str, NormStats]
    """Weighted norms per regularizer."""


# ---- telemetry ------------------------------------------------------------------------------------

TelemetryHook = Callable[[str, dict[str, Any]], None]
"""Receives ``(event_name, fields)``; events are ``grad_norm.report`` and ``grad_norm.spike``."""

_hook_lock = threading.Lock()
_telemetry_hook: TelemetryHook | None = None


def set_telemetry_hook(hook: TelemetryHook | None) -> None:
    """Also send grad-norm events to ``hook`` (None removes it), e.g. a metrics logger.

    Events always go to the telemetry bus (``tinker_actors.telemetry.emit``, uploaded with the report's
    session); the hook is for callers who want them without attaching a bus handler. The tracker calls it
    from its own thread and ignores its failures.
    """
    global _telemetry_hook
    with _hook_lock:
        _telemetry_hook = hook


def _emit(event: str, fields: dict[str, Any], *, session_id: str | None, warning: bool = False) -> None:
    try:
        from tinker_actors.telemetry import emit

        emit(event, fields, severity="WARNING" if warning else "INFO", session_id=session_id)
    except Exception:  # telemetry is an observer: it never breaks the tracker
        logger.debug("grad-norm telemetry emit failed for %s", event, exc_info=True)
    with _hook_lock:
        hook = _telemetry_hook
    if hook is None:
        return
    try:
        hook(event, fields)
    except Exception:
        logger.warning("grad-norm telemetry hook failed for %s", event, exc_info=True)


# ---- state ----------------------------------------------------------------------------------------

class _Running:
    """Welford running statistics, so the summary covers every step, not only the kept history."""

    def __init__(self) -> None:
        self.count, self.mean, self._m2 = 0, 0.0, 0.0
        self.min, self.max, self.last = math.inf, -math.inf, math.nan

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (value - self.mean)
        self.min, self.max, self.last = min(self.min, value), max(self.max, value), value

    def stats(self) -> NormStats:
        std = math.sqrt(self._m2 / self.count) if self.count else 0.0
        return NormStats(self.count, self.mean, std, self.min, self.max, self.last)


@dataclass
class _ModelNorms:
    history: deque[GradNormRecord]
    steps: int = 0
    spikes: int = 0
    total: _Running = field(default_factory=_Running)
    base: _Running = field(default_factory=_Running)
    terms: dict[str, _Running] = field(default_factory=dict)


# ---- the actor ------------------------------------------------------------------------------------

class GradNormTracker(SupervisedActor):
    def __init__(self, *, history: int = 1000, max_models: int = 64, spike_factor: float = 3.0,
                 spike_window: int = 20, spike_min_history: int = 5) -> None:
        super().__init__()
        self._history = history
        self._max_models = max_models
        self._spike_factor = spike_factor
        self._spike_window = spike_window
        self._spike_min_history = spike_min_history
        self._models: OrderedDict[str, _ModelNorms] = OrderedDict()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, GradNormReport):
            try:
                self._record(message)
            except Exception:  # one malformed report must not cost the history (nor root restart intensity)
                logger.warning("grad-norm report dropped: %r", message, exc_info=True)
        elif isinstance(message, GetGradNormHistory):
            norms = self._models.get(message.model_id)
            if norms is None:
                return []
            records = list(norms.history)
            return records if message.last is None else records[-message.last:] if message.last > 0 else []
        elif isinstance(message, GetGradNormSummary):
            norms = self._models.get(message.model_id)
            if norms is None:
                return None
            return GradNormSummary(norms.steps, norms.spikes, norms.total.stats(), norms.base.stats(),
                                   {name: running.stats() for name, running in norms.terms.items()})
        return None

    def _record(self, report: GradNormReport) -> None:
        # Read everything first, so a malformed report fails before any state changes.
        total, base = float(report.total), float(report.base)
        terms = [(t.name, float(t.raw), float(t.weighted)) for t in report.terms]
        norms = self._models.get(report.model_id)
        if norms is None:
            norms = self._models[report.model_id] = _ModelNorms(deque(maxlen=self._history))
            while len(self._models) > self._max_models:  # forget the model that reported least recently
                self._models.popitem(last=False)
        self._models.move_to_end(report.model_id)
        recent = [record.report.total for record in list(norms.history)[-self._spike_window:]]
        spike = False
        if len(recent) >= self._spike_min_history:
            spike = total > self._spike_factor * statistics.median(recent) and total > 0.0
        norms.steps += 1
        record = GradNormRecord(norms.steps, report, spike)
        norms.history.append(record)
        norms.total.add(total)
        norms.base.add(base)
        for name, _, weighted in terms:
            norms.terms.setdefault(name, _Running()).add(weighted)
        fields: dict[str, Any] = {"model_id": report.model_id, "step": norms.steps, "loss": report.loss,
                                  "base": base, "total": total,
                                  "terms": {name: {"raw": raw, "weighted": weighted} for name, raw, weighted in terms}}
        _emit("grad_norm.report", fields, session_id=report.session_id)
        if spike:
            norms.spikes += 1
            logger.warning("gradient-norm spike for %s at step %d: %.4g (median of recent steps %.4g)",
                           report.model_id, norms.steps, report.total, statistics.median(recent))
            _emit("grad_norm.spike", {**fields, "median": statistics.median(recent), "factor": self._spike_factor},
                  session_id=report.session_id, warning=True)


def _tracker_spec(runtime: Runtime) -> ChildSpec:
    return ChildSpec("grad_norm_tracker", GradNormTracker.start, restart=Restart.PERMANENT, shutdown=2.0)


register_slot("grad_norm_tracker", _tracker_spec)


# ---- client side: never let the tracker break training -------------------------------------------

def report(runtime: Runtime, message: GradNormReport) -> None:
    """Tell ``runtime``'s tracker; failures are logged, never raised (training does not depend on it)."""
    try:
        runtime.grad_norm_tracker.tell(message)
    except Exception:
        logger.debug("grad-norm report dropped", exc_info=True)


def history(runtime: Runtime, model_id: str, last: int | None = None, timeout: float = 5.0
            ) -> list[GradNormRecord]:
    reply = runtime.grad_norm_tracker.ask(GetGradNormHistory(model_id, last), timeout=timeout)
    return list(reply) if isinstance(reply, list) else []


def summary(runtime: Runtime, model_id: str, timeout: float = 5.0) -> GradNormSummary | None:
    reply = runtime.grad_norm_tracker.ask(GetGradNormSummary(model_id), timeout=timeout)
    return reply if isinstance(reply, GradNormSummary) else None
