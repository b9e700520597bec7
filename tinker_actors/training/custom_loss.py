"""forward_backward_custom: train on any differentiable function of the target-token logprobs (T5).

The math (docs/custom-loss.md): a ``forward`` returns lp_i, the logprob of each target token of datum i.
The client evaluates L_total = L(lp) + Σ_j w_j R_j(lp) and its gradient g_i = ∂L_total/∂lp_i, then sends a
``forward_backward`` with ``cross_entropy`` on datums holding only ``target_tokens`` and
``weights = -g_i``. The server's loss -Σ w·lp then has the parameter gradient Σ g·∇lp = ∇L_total (chain
rule, g frozen at the current parameters), so the accumulated gradient is exactly that of L_total.

The loss is either a torch callable with the official SDK's signature
``loss_fn(data, logprobs: list[torch.Tensor]) -> (loss, metrics)``, differentiated with autograd, any
object with ``value_and_grad(data, logprobs: list[np.ndarray]) -> TermValue`` (no torch needed), or a
:class:`~tinker_actors.training.loss_handles.LossHandle` (official SDK 0.38), run per datum as such a callable.

Ordering: the forward and the backward chunks are queued in the training client's send chain when this is
called; the backward chunks keep their place and take their seq ids only once the gradient is ready, so
an ``optim_step`` submitted right after can never overtake them. Nothing here blocks the caller.

The client hands this module a :class:`TrainingPort` (what it needs, and nothing else), so this module
neither imports the client nor touches its private names. An empty batch sends nothing and returns an
empty output without calling the loss, as ``forward_backward([])`` does. A regularizer whose value does not
depend on the logprobs is a term with zero gradient; the base loss must depend on them.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinker_actors.errors import InvalidInputError, TinkerError
from tinker_actors.futures import APIFuture, resolve
from tinker_actors.training.chunking import ChunkLimits, empty_output, split_batch
from tinker_actors.training.grad_norms import GradNormReport, TermNorm
from tinker_actors.training.loss_handles import LossHandle, check_loss_inputs, handle_loss
from tinker_actors.training.regularizers import (
    Logprobs,
    Regularizer,
    Term,
    TermResult,
    TermValue,
    regularizer_list,
    run_in_worker,
    run_regularizers,
)
from tinker_actors.types import (
    Datum,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    TensorData,
)
from tinker_actors.types.datum import datum_list

__all__ = [
    "CustomLossError",
    "CustomLossResult",
    "LossFn",
    "TrainingPort",
    "compute_custom_loss",
    "evaluate_term",
    "forward_backward_custom",
    "forward_datums",
    "linear_datums",
]

LossFn = Term | Callable[..., Any]
"""A :class:`Term` (numpy value and gradient) or a torch callable ``(data, logprobs) -> (loss, metrics)``."""


class CustomLossError(TinkerError):
    """The custom loss failed, returned something malformed, or does not depend on the logprobs."""


@dataclass(frozen=True, slots=True)
class TrainingPort:
    """What :func:`forward_backward_custom` needs from a training client, built by the client."""

    model_id: str
    session_id: str | None
    chunk_limits: ChunkLimits
    forward: Callable[[list[Datum]], APIFuture[ForwardBackwardOutput]]
    """Queue a ``cross_entropy`` forward of these datums in the client's send chain."""
    backward_when_ready: Callable[[concurrent.futures.Future[Any], list[Callable[[], ForwardBackwardInput]]],
                                  APIFuture[ForwardBackwardOutput]]
    """Queue one ``forward_backward`` per input maker now, each made (and encoded by the client's protocol) and
    taking its seq id only once the given future resolves (not sent if it fails); one future for all of them,
    combined as chunks are."""
    report_norms: Callable[[GradNormReport], None]
    """Record the step's gradient norms (``grad_norm_history``)."""


@dataclass(frozen=True, slots=True)
class CustomLossResult:
    """Everything the client computed for one step: the trained loss, its gradient, metrics and norms."""

    loss: float
    base_loss: float
    grads: Logprobs
    """∂(base + Σ weight·term)/∂logprobs, one array per datum."""
    base: TermValue
    terms: tuple[TermResult, ...]
    norms: GradNormReport
    metrics: dict[str, float]


# ---- evaluation ----------------------------------------------------------------------------------

def evaluate_term(fn: LossFn, data: Sequence[Datum], logprobs: Logprobs, *, constant_ok: bool = False) -> TermValue:
    """Value and gradient of a numpy term or a torch callable, with the gradient checked.

    A torch callable whose value does not depend on the logprobs is an error (:class:`CustomLossError`),
    unless ``constant_ok`` (a regularizer): then its gradient is zero.
    """
    if isinstance(fn, Term):
        result = fn.value_and_grad(data, logprobs)
        if not isinstance(result, TermValue):
            raise CustomLossError(f"value_and_grad must return a TermValue, got {type(result).__name__}")
    elif callable(fn):
        result = _evaluate_torch(fn, data, logprobs, constant_ok=constant_ok)
    else:
        raise InvalidInputError(f"a loss must be a torch callable or have value_and_grad, got {type(fn).__name__}")
    return _checked(result, logprobs)


def _evaluate_torch(fn: Callable[..., Any], data: Sequence[Datum], logprobs: Logprobs, *,
                    constant_ok: bool) -> TermValue:
    try:
        import torch
    except ImportError:
        raise InvalidInputError("a callable loss needs torch; without torch give an object with "
                                "value_and_grad(data, logprobs) -> TermValue") from None
    # float32, as the official SDK hands them over, so ported loss code sees the same dtype.
    tensors = [torch.tensor(lp, dtype=torch.float32).requires_grad_(True) for lp in logprobs]
    returned = fn(list(data), tensors)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise CustomLossError("a custom loss must return (loss, metrics)")
    loss, metrics = returned
    if not isinstance(loss, torch.Tensor):
        raise CustomLossError(f"the loss must be a torch tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        loss = loss.sum()  # a per-datum or per-token loss is summed, as its backward() would require
    if not loss.requires_grad:
        if constant_ok:
            return TermValue(float(loss.detach().item()), [np.zeros(lp.shape) for lp in logprobs], _metrics(metrics))
        raise CustomLossError("the loss does not depend on the logprobs (no gradient flows to them)")
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    if not constant_ok and tensors and all(g is None for g in grads):
        raise CustomLossError("the loss does not depend on the logprobs (no gradient flows to them)")
    # A datum the loss does not use has no gradient: it contributes zero weights.
    arrays = [np.zeros(lp.shape) if g is None else g.detach().to(torch.float64).numpy().reshape(lp.shape)
              for g, lp in zip(grads, logprobs, strict=True)]
    return TermValue(float(loss.detach().item()), arrays, _metrics(metrics))


def _metrics(metrics: Any) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise CustomLossError(f"metrics must be a dict, got {type(metrics).__name__}")
    converted: dict[str, float] = {}
    for key, value in metrics.items():
        item = getattr(value, "item", None)
        converted[str(key)] = float(item() if callable(item) else value)
    return converted


def _checked(result: TermValue, logprobs: Logprobs) -> TermValue:
    if not math.isfinite(result.value):
        raise CustomLossError(f"the value is not finite ({result.value})")
    if len(result.grads) != len(logprobs):
        raise CustomLossError(f"{len(result.grads)} gradients for {len(logprobs)} datums")
    grads: Logprobs = []
    for index, (grad, lp) in enumerate(zip(result.grads, logprobs, strict=True)):
        array = np.asarray(grad, dtype=np.float64)
        if array.size != lp.size:
            raise CustomLossError(f"datum {index}: gradient has {array.size} entries, logprobs {lp.size}")
        if not np.all(np.isfinite(array)):
            raise CustomLossError(f"datum {index}: the gradient is not finite")
        grads.append(array.reshape(lp.shape))
    return TermValue(float(result.value), grads, dict(result.metrics))


def _norm(grads: Logprobs) -> float:
    return math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))


def compute_custom_loss(data: Sequence[Datum], logprobs: Logprobs, loss_fn: LossFn,
                        regularizers: Sequence[Regularizer] = (), *, parallel: bool = True,
                        model_id: str = "", session_id: str | None = None) -> CustomLossResult:
    """Evaluate base loss and regularizers, compose them, and measure every gradient norm (no extra passes)."""
    try:
        base = evaluate_term(loss_fn, data, logprobs)
    except TinkerError:
        raise
    except Exception as error:
        raise CustomLossError(f"the custom loss raised {error!r}") from error
    terms = tuple(run_regularizers(regularizers, data, logprobs, _checked_term, parallel=parallel))
    grads = [g.copy() for g in base.grads]
    loss = base.value
    metrics = dict(base.metrics)
    term_norms = []
    for term in terms:
        for total, grad in zip(grads, term.value.grads, strict=True):
            total += term.weight * grad
        loss += term.weight * term.value.value
        raw = _norm(term.value.grads)
        term_norms.append(TermNorm(term.name, term.weight, term.value.value, raw, term.weight * raw))
        metrics[f"regularizer/{term.name}/value"] = term.value.value
        metrics[f"regularizer/{term.name}/contribution"] = term.weight * term.value.value
        metrics[f"regularizer/{term.name}/grad_norm"] = raw
        for key, value in term.value.metrics.items():
            metrics[f"regularizer/{term.name}/{key}"] = value
    norms = GradNormReport(model_id=model_id, loss=loss, base=_norm(base.grads), terms=tuple(term_norms),
                           total=_norm(grads), session_id=session_id)
    if terms:
        metrics["custom_loss/base"] = base.value
        metrics["custom_loss/total"] = loss
        metrics["grad_norm/base"] = norms.base
        metrics["grad_norm/total"] = norms.total
    return CustomLossResult(loss, base.value, grads, base, terms, norms, metrics)


def _checked_term(term: Any, data: Sequence[Datum], logprobs: Logprobs) -> TermValue:
    return evaluate_term(term, data, logprobs, constant_ok=True)


# ---- the linear-loss datums ----------------------------------------------------------------------

def _targets(datum: Datum, index: int) -> TensorData:
    targets = datum.loss_fn_inputs.get("target_tokens")
    if targets is None:
        raise InvalidInputError(f"datum {index} has no target_tokens: forward_backward_custom needs them")
    return targets


def linear_datums(data: Sequence[Datum], grads: Logprobs) -> list[Datum]:
    """Datums whose cross-entropy has the gradient of the custom loss: target_tokens, weights = -grad (with the
    datum's provenance spans, which the official SDK 0.38 sends along too)."""
    return [Datum(model_input=datum.model_input,
                  loss_fn_inputs={"target_tokens": _targets(datum, i),
                                  "weights": TensorData.from_numpy((-grad).astype(np.float32).reshape(-1))},
                  model_input_spans=datum.model_input_spans, loss_fn_input_spans=datum.loss_fn_input_spans)
            for i, (datum, grad) in enumerate(zip(data, grads, strict=True))]


def forward_datums(data: Sequence[Datum]) -> list[Datum]:
    """The datums of the forward: only ``target_tokens`` and ``weights`` (zeros when absent), as the official SDK
    sends; the loss's other inputs (advantages, a scalar per datum, ...) stay on the client, where it reads them,
    and need not be inputs the server knows."""
    forward = []
    for i, datum in enumerate(data):
        targets = _targets(datum, i)
        weights = datum.loss_fn_inputs.get("weights")
        if weights is None:
            weights = TensorData.from_numpy(np.zeros(np.shape(targets.to_numpy()), dtype=np.float32))
        forward.append(Datum(model_input=datum.model_input,
                             loss_fn_inputs={"target_tokens": targets, "weights": weights},
                             model_input_spans=datum.model_input_spans, loss_fn_input_spans=datum.loss_fn_input_spans))
    return forward


def _logprobs_of(output: ForwardBackwardOutput, data: Sequence[Datum]) -> Logprobs:
    if len(output.loss_fn_outputs) != len(data):
        raise CustomLossError(f"the forward returned {len(output.loss_fn_outputs)} outputs for {len(data)} datums")
    logprobs: Logprobs = []
    for index, (out, datum) in enumerate(zip(output.loss_fn_outputs, data, strict=True)):
        tensor = out.get("logprobs")
        if tensor is None:
            raise CustomLossError(f"the forward output of datum {index} has no logprobs")
        array = np.asarray(tensor.to_numpy(), dtype=np.float64).reshape(-1)
        if array.size != _targets(datum, index).size:
            raise CustomLossError(f"datum {index}: {array.size} logprobs for {_targets(datum, index).size} targets")
        logprobs.append(array)
    return logprobs


# ---- the client operation ------------------------------------------------------------------------

def forward_backward_custom(port: TrainingPort, data: Sequence[Datum], loss_fn: LossFn | LossHandle, *,
                            regularizers: Sequence[Regularizer] = (), parallel: bool = True
                            ) -> APIFuture[ForwardBackwardOutput]:
    """Queue forward and backward now (in this order, before anything submitted later); never blocks."""
    call = "forward_backward_custom"
    data = datum_list(data, call)
    if isinstance(loss_fn, LossHandle):  # from ServiceClient.create_custom_loss: run per datum, here
        check_loss_inputs(loss_fn, data, port.session_id)
        loss_fn = handle_loss(loss_fn)
    if not (isinstance(loss_fn, Term) or callable(loss_fn)):
        raise InvalidInputError("loss_fn must be a torch callable or have value_and_grad(data, logprobs)")
    regularizers = regularizer_list(regularizers, call)
    if not data:
        done: APIFuture[ForwardBackwardOutput] = APIFuture()
        resolve(done.raw, empty_output())
        return done
    # Backward chunks are planned now from zero weights (same sizes as the real ones), so their places in
    # the send chain can be reserved before the gradient exists.
    placeholders = linear_datums(data, [np.zeros(_targets(d, i).size) for i, d in enumerate(data)])
    chunks = split_batch(placeholders, port.chunk_limits)
    for chunk in chunks:
        try:
            ForwardBackwardInput(data=chunk, loss_fn="cross_entropy")
        except ValueError as invalid:
            raise InvalidInputError(f"invalid forward_backward_custom input: {invalid}") from None

    forward = port.forward(forward_datums(data))
    gradient: concurrent.futures.Future[CustomLossResult] = concurrent.futures.Future()
    model_id, session_id = port.model_id, port.session_id

    def compute() -> None:
        try:
            result = compute_custom_loss(data, _logprobs_of(forward.raw.result(), data), loss_fn, regularizers,
                                         parallel=parallel, model_id=model_id, session_id=session_id)
        except BaseException as error:
            gradient.set_exception(error if isinstance(error, TinkerError) else
                                   CustomLossError(f"computing the custom loss failed: {error!r}"))
            return
        gradient.set_result(result)
        port.report_norms(result.norms)

    # The loss runs on a worker thread once the forward result arrives (never on the IoLoop).
    forward.raw.add_done_callback(lambda _: run_in_worker(compute))

    inputs: list[Callable[[], ForwardBackwardInput]] = []
    start = 0
    for chunk in chunks:
        span = (start, start + len(chunk))
        start += len(chunk)

        def make_input(span: tuple[int, int] = span) -> ForwardBackwardInput:
            grads = gradient.result().grads[span[0]:span[1]]
            return ForwardBackwardInput(data=linear_datums(data[span[0]:span[1]], grads), loss_fn="cross_entropy")

        inputs.append(make_input)
    backward = port.backward_when_ready(gradient, inputs)

    def merged(output: ForwardBackwardOutput) -> ForwardBackwardOutput:
        # The server's loss is the linear surrogate's; the user's own figures are what matter.
        return output.model_copy(update={"metrics": {**output.metrics, **gradient.result().metrics}})

    return backward.map(merged)
