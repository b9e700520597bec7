"""Regularizers: named, weighted value-and-gradient terms over per-datum target-token logprobs (FEATURES T7).

A term sees what the custom-loss path sees: one float64 array per datum holding the log-probability of each
*target token* (the server returns nothing else — no full distribution over the vocabulary), and returns its
value together with its exact gradient with respect to those arrays. The custom-loss path composes
``base + Σ weight_i · term_i`` and trains on that (see :mod:`tinker_actors.training.custom_loss`).

Terms run in parallel on daemon worker threads (numpy releases the GIL for array work), each under its own
timeout, or one after another in the calling thread (``parallel=False``) for debugging. A term that raises,
returns a malformed gradient or overruns its timeout fails the whole computation with a
:class:`RegularizerError` that names it; the first such term in declaration order is reported.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError, TinkerError
from tinker_actors.types import Datum

__all__ = [
    "L1",
    "L2",
    "Consistency",
    "KLPenalty",
    "Logprobs",
    "Regularizer",
    "RegularizerError",
    "RegularizerTimeoutError",
    "Term",
    "TermResult",
    "TermValue",
    "reference_logprobs",
    "regularizer_list",
    "run_in_worker",
    "run_regularizers",
    "target_weights",
]

FloatArray = npt.NDArray[np.float64]
Logprobs = list[FloatArray]
"""One 1-D float64 array per datum: the logprob of each of its target tokens."""


class RegularizerError(TinkerError):
    """A regularizer failed (raised, or returned a malformed value or gradient); ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"regularizer {name!r}: {message}")
        self.name = name


class RegularizerTimeoutError(RegularizerError, TimeoutError):
    """A regularizer did not finish within its timeout (its thread is abandoned, not killed)."""


@dataclass(frozen=True, slots=True)
class TermValue:
    """What a term returns: its scalar value, d value / d logprobs (one array per datum) and metrics."""

    value: float
    grads: Logprobs
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Term(Protocol):
    """A differentiable function of the target-token logprobs."""

    def value_and_grad(self, data: Sequence[Datum], logprobs: Logprobs) -> TermValue: ...


@dataclass(frozen=True, slots=True)
class Regularizer:
    """``weight · term`` is added to the trained loss. ``timeout`` (seconds) bounds one evaluation."""

    name: str
    term: Term | Callable[..., Any]
    weight: float = 1.0
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("a regularizer needs a non-empty name")
        if not (isinstance(self.term, Term) or callable(self.term)):
            raise InvalidInputError(f"regularizer {self.name!r}: term must have value_and_grad(data, logprobs) or "
                                    "be a torch callable (data, logprobs) -> (loss, metrics), got "
                                    f"{type(self.term).__name__}")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise InvalidInputError(f"regularizer {self.name!r}: weight must be finite and >= 0, got {self.weight}")
        if not self.timeout > 0:
            raise InvalidInputError(f"regularizer {self.name!r}: timeout must be > 0")


@dataclass(frozen=True, slots=True)
class TermResult:
    """One evaluated regularizer: raw value and gradient (unweighted), its weight and how long it took."""

    name: str
    weight: float
    value: TermValue
    seconds: float


def regularizer_list(regularizers: object, call: str) -> list[Regularizer]:
    """The ``regularizers`` argument of a call as a list, or :class:`InvalidInputError` saying what was
    expected: a list of :class:`Regularizer` with distinct names (not one Regularizer, not dicts)."""
    if isinstance(regularizers, Regularizer):
        raise InvalidInputError(f"{call}: regularizers takes a list of Regularizer, got a single Regularizer: "
                                "pass [regularizer]")
    if isinstance(regularizers, str | bytes | Mapping) or not isinstance(regularizers, Iterable):
        raise InvalidInputError(f"{call}: regularizers takes a list of Regularizer, got {type(regularizers).__name__}")
    checked = list(regularizers)
    for index, regularizer in enumerate(checked):
        if not isinstance(regularizer, Regularizer):
            raise InvalidInputError(f"{call}: regularizers[{index}] is a {type(regularizer).__name__}, not a "
                                    "Regularizer: build one with Regularizer(name=..., term=..., weight=...)")
    names = [r.name for r in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"{call}: duplicate regularizer names: {duplicates}")
    return checked


TermEvaluator = Callable[[Any, Sequence[Datum], Logprobs], TermValue]
"""Evaluates a term (a :class:`Term` or, with torch, a torch callable) and checks its gradient."""


# ---- execution -----------------------------------------------------------------------------------

class _DaemonPool:
    """Worker threads that are daemons, so a term stuck past its timeout cannot hold the interpreter open.

    Each submit either claims an idle worker or starts a new one, so a job never waits behind a stuck one.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((job, future))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                return future
            self._started += 1
            name = f"regularizer-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as error:
                    future.set_exception(error)
            with self._lock:
                self._idle += 1


_pool = _DaemonPool()


def run_in_worker(job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    """Run ``job`` on a daemon worker thread (client-side loss work must not run on the IoLoop)."""
    return _pool.submit(job)


def run_regularizers(regularizers: Sequence[Regularizer], data: Sequence[Datum], logprobs: Logprobs,
                     evaluate: TermEvaluator, *, parallel: bool = True) -> list[TermResult]:
    """Evaluate every regularizer (in parallel unless told otherwise); results in declaration order."""
    names = [r.name for r in regularizers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"duplicate regularizer names: {duplicates}")

    def timed(regularizer: Regularizer) -> tuple[TermValue, float]:
        started = time.perf_counter()
        value = evaluate(regularizer.term, data, logprobs)
        return value, time.perf_counter() - started

    outcomes: list[tuple[TermValue, float] | BaseException] = []
    if parallel and len(regularizers) > 1:
        started = time.monotonic()
        futures = [_pool.submit(functools.partial(timed, r)) for r in regularizers]
        for regularizer, future in zip(regularizers, futures, strict=True):
            remaining = started + regularizer.timeout - time.monotonic()
            try:
                outcomes.append(future.result(timeout=max(remaining, 0.0)))
            except concurrent.futures.TimeoutError:
                future.cancel()
                outcomes.append(RegularizerTimeoutError(regularizer.name,
                                                        f"did not finish within {regularizer.timeout} s"))
            except BaseException as error:
                outcomes.append(error)
    else:
        # In the calling thread, so a debugger and tracebacks see the term directly; a timeout can then
        # only be detected after the term returns, and it still fails the computation.
        for regularizer in regularizers:
            try:
                value, seconds = timed(regularizer)
                if seconds > regularizer.timeout:
                    raise RegularizerTimeoutError(regularizer.name, f"took {seconds:.3f} s, more than its "
                                                                    f"timeout of {regularizer.timeout} s")
                outcomes.append((value, seconds))
            except BaseException as error:
                outcomes.append(error)

    results: list[TermResult] = []
    for regularizer, outcome in zip(regularizers, outcomes, strict=True):
        if isinstance(outcome, RegularizerError):
            raise outcome
        if isinstance(outcome, BaseException):
            raise RegularizerError(regularizer.name, f"failed: {outcome!r}") from outcome
        results.append(TermResult(regularizer.name, regularizer.weight, outcome[0], outcome[1]))
    return results


# ---- built-in terms ------------------------------------------------------------------------------

def target_weights(datum: Datum, length: int) -> FloatArray:
    """The datum's ``weights`` loss input (prompt tokens usually weigh 0), or all ones if it has none."""
    tensor = datum.loss_fn_inputs.get("weights")
    if tensor is None:
        return np.ones(length)
    weights = np.asarray(tensor.to_numpy(), dtype=np.float64).reshape(-1)
    if weights.shape[0] != length:
        raise InvalidInputError(f"weights has {weights.shape[0]} entries but there are {length} target logprobs")
    return weights


def _masks(data: Sequence[Datum], logprobs: Logprobs, use_weights: bool) -> list[FloatArray]:
    return [target_weights(d, lp.shape[0]) if use_weights else np.ones(lp.shape[0])
            for d, lp in zip(data, logprobs, strict=True)]


@dataclass(frozen=True, slots=True)
class L1:
    """Σ w·|logprob| over target tokens (w: the datum's weights if ``use_weights``); pulls logprobs to 0,
    i.e. sharpens the model on its targets. Gradient w·sign(logprob)."""

    use_weights: bool = True

    def value_and_grad(self, data: Sequence[Datum], logprobs: Logprobs) -> TermValue:
        masks = _masks(data, logprobs, self.use_weights)
        value = sum(float(np.sum(m * np.abs(lp))) for m, lp in zip(masks, logprobs, strict=True))
        return TermValue(value, [m * np.sign(lp) for m, lp in zip(masks, logprobs, strict=True)])


@dataclass(frozen=True, slots=True)
class L2:
    """Σ w·(logprob - center)² over target tokens. Gradient 2w·(logprob - center)."""

    center: float = 0.0
    use_weights: bool = True

    def value_and_grad(self, data: Sequence[Datum], logprobs: Logprobs) -> TermValue:
        masks = _masks(data, logprobs, self.use_weights)
        diffs = [lp - self.center for lp in logprobs]
        value = sum(float(np.sum(m * d * d)) for m, d in zip(masks, diffs, strict=True))
        return TermValue(value, [2.0 * m * d for m, d in zip(masks, diffs, strict=True)])


KLEstimator = Literal["k1", "k2", "k3"]


@dataclass(frozen=True, slots=True)
class KLPenalty:
    """A per-token estimate of KL(policy ‖ reference) on the target tokens, from their logprobs alone.

    With d = logprob - reference: ``k1`` = d, ``k2`` = d²/2, ``k3`` = exp(-d) - 1 + d (non-negative, the
    default). These are sample estimates: they equal the KL in expectation only when the targets were
    sampled from the policy; on other data they are a divergence penalty on the observed tokens. The
    reference is one array per datum, e.g. from :func:`reference_logprobs` (a sampling client's
    ``compute_logprobs`` on a frozen model).
    """

    reference: Sequence[Sequence[float] | FloatArray]
    estimator: KLEstimator = "k3"
    use_weights: bool = True

    def value_and_grad(self, data: Sequence[Datum], logprobs: Logprobs) -> TermValue:
        if len(self.reference) != len(logprobs):
            raise InvalidInputError(f"KLPenalty has references for {len(self.reference)} datums, "
                                    f"the batch has {len(logprobs)}")
        masks = _masks(data, logprobs, self.use_weights)
        value, grads, total_d, count = 0.0, [], 0.0, 0.0
        for mask, lp, ref in zip(masks, logprobs, self.reference, strict=True):
            d = lp - np.asarray(ref, dtype=np.float64).reshape(-1)
            if self.estimator == "k1":
                per_token, grad = d, np.ones_like(d)
            elif self.estimator == "k2":
                per_token, grad = 0.5 * d * d, d
            else:
                ratio = np.exp(-d)
                per_token, grad = ratio - 1.0 + d, 1.0 - ratio
            value += float(np.sum(mask * per_token))
            grads.append(mask * grad)
            total_d += float(np.sum(mask * d))
            count += float(np.sum(mask))
        return TermValue(value, grads, {"kl_mean_logratio": total_d / count if count else 0.0})


@dataclass(frozen=True, slots=True)
class Consistency:
    """Σ over pairs (a, b) of (S_a - S_b)², S_i = the datum's (weighted) mean target logprob.

    Asks paired datums (e.g. a prompt and its paraphrase, same answer) to be equally likely; sequence
    means make pairs of different lengths comparable.
    """

    pairs: Sequence[tuple[int, int]]
    use_weights: bool = True

    def value_and_grad(self, data: Sequence[Datum], logprobs: Logprobs) -> TermValue:
        masks = _masks(data, logprobs, self.use_weights)
        normalised = [m / max(float(np.sum(m)), 1e-12) for m in masks]
        means = [float(np.sum(n * lp)) for n, lp in zip(normalised, logprobs, strict=True)]
        grads = [np.zeros_like(lp) for lp in logprobs]
        value = 0.0
        for a, b in self.pairs:
            if not (0 <= a < len(logprobs) and 0 <= b < len(logprobs)):
                raise InvalidInputError(f"Consistency pair {(a, b)} is outside a batch of {len(logprobs)}")
            diff = means[a] - means[b]
            value += diff * diff
            grads[a] = grads[a] + 2.0 * diff * normalised[a]
            grads[b] = grads[b] - 2.0 * diff * normalised[b]
        return TermValue(value, grads)


def reference_logprobs(sampling_client: Any, data: Sequence[Datum], timeout: float = 120.0) -> Logprobs:
    """Target-token logprobs of ``data`` under ``sampling_client``'s model, for :class:`KLPenalty`.

    Needs next-token datums (targets are the inputs shifted by one): the full sequence is the input plus
    the last target, and ``compute_logprobs`` of it, without its first entry, aligns with the targets.
    All requests are issued before any is awaited.
    """
    from tinker_actors.types import ModelInput

    futures = []
    for index, datum in enumerate(data):
        tokens = datum.model_input.to_ints()
        targets = [int(t) for t in datum.loss_fn_inputs["target_tokens"].tolist()]
        if len(targets) != len(tokens) or tokens[1:] != targets[:-1]:
            raise InvalidInputError(f"datum {index}: reference_logprobs needs targets equal to the inputs "
                                    "shifted by one token")
        futures.append(sampling_client.compute_logprobs(ModelInput.from_ints(tokens + targets[-1:])))
    result: Logprobs = []
    for future in futures:
        values = future.result(timeout)[1:]
        result.append(np.array([v if v is not None else 0.0 for v in values], dtype=np.float64))
    return result
