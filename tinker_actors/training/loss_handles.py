"""Per-datum custom losses of the official SDK 0.38: :class:`LossHandle`, made by ``ServiceClient.create_custom_loss``.

``create_custom_loss(fn, input_ranks)`` traces ``fn(logprobs, *inputs) -> (loss, metrics)`` with ``torch.fx``
(:func:`trace_loss`) and refuses, before anything is sent, what the official SDK refuses: anything but torch and
math (no other libraries, no ``torch.nn`` modules, no branching on tensor values, no tensors captured from outside,
no leaving torch with ``.item()``), metric names other than ``custom/<name>:sum|mean``, and ranks that do not match
the parameters. ``forward_backward_custom(data, handle)`` then checks each datum against the declared ranks
(:func:`check_loss_inputs`) and runs the traced graph once per datum on the client (:func:`handle_loss`): the
losses are summed, and each metric is summed or averaged over the datums as its suffix says. The gradient then
reaches the model as for any client-side custom loss (``tinker_actors.training.custom_loss``).

Nothing is uploaded: the local service does not announce ``custom_loss_server_side`` and this client runs every
handle on the client, whatever a server announces (docs/custom-loss.md, "Per-datum losses by handle").
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, TypeAlias

from tinker_actors.errors import InvalidInputError
from tinker_actors.types.custom_loss_input import CustomLossInput, CustomLossInputRank
from tinker_actors.types.datum import Datum

if TYPE_CHECKING:
    import torch
    import torch.fx

__all__ = ["CustomLossDefinitionError", "LossHandle", "LossHandleSessionError", "PerDatumLossFn",
           "TorchRequiredError", "check_loss_inputs", "handle_loss", "trace_loss"]

PerDatumLossFn: TypeAlias = Callable[Concatenate["torch.Tensor", ...],
                                     tuple["torch.Tensor", Mapping[str, "torch.Tensor"]]]
"""A per-datum loss: ``(logprobs, *the loss_fn_inputs it reads) -> (scalar loss, metrics)``, metrics keyed
``custom/<name>:sum`` or ``custom/<name>:mean``."""


class CustomLossDefinitionError(InvalidInputError):
    """The function given to ``create_custom_loss`` (or its ``input_ranks``) breaks a rule of custom losses."""


class LossHandleSessionError(InvalidInputError):
    """A :class:`LossHandle` was given to a training client of another session than the one that created it."""


class TorchRequiredError(InvalidInputError, ImportError):
    """``create_custom_loss`` traces with ``torch.fx``: it needs torch installed (``pip install torch``).
    Also an ``ImportError``, as the official SDK raises."""


# Where the functions a loss calls may come from; fx records Python arithmetic and indexing as functions of the
# ``operator`` module, which CPython defines in ``_operator``.
_FUNCTION_MODULES = frozenset({"torch", "math", "operator", "_operator"})
# The custom/ prefix keeps a loss's metrics apart from the trainer's own (loss:sum); the suffix says how a metric
# combines over the datums.
_METRIC_NAME = re.compile(r"custom/[a-z0-9_./-]{1,64}:(sum|mean)")
_PARAMETER_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_MAX_PARAMETERS = 16  # logprobs included
_HOST_METHODS = frozenset({"item", "tolist", "numpy"})  # they turn a tensor into Python or numpy values
_RANKS = (0, 1, 2)


@dataclass(frozen=True)
class LossHandle:
    """A traced per-datum loss, made by ``ServiceClient.create_custom_loss``; give it to
    ``TrainingClient.forward_backward_custom`` in place of a callable (docs/custom-loss.md)."""

    name: str
    """The loss function's ``__name__``."""
    inputs: tuple[CustomLossInput, ...]
    """``logprobs`` first, then the ``loss_fn_inputs`` keys the loss reads, in its argument order, each with its
    declared rank."""
    session_id: str
    """The session that made it; only that session's clients use it."""
    graph: Any = field(repr=False, compare=False)
    """The traced ``torch.fx.GraphModule``: what runs, rather than the original function."""
    loss_id: str | None = None
    """The server's id of an uploaded loss; always None here (every handle runs on the client)."""

    @property
    def key(self) -> str:
        """Names the traced loss (its code and inputs), so a session creates each loss once."""
        digest = hashlib.sha256(str(self.graph.code).encode())
        digest.update(repr(self.inputs).encode())
        return digest.hexdigest()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The ``loss_fn_inputs`` keys the loss reads, in its argument order."""
        return tuple(loss_input.name for loss_input in self.inputs[1:])


# ---- create_custom_loss: checks and tracing --------------------------------------------------------

def trace_loss(fn: Any, input_ranks: Any, session_id: str = "") -> LossHandle:
    """Check ``fn`` and ``input_ranks`` and trace ``fn``: a :class:`LossHandle` of ``session_id``, or a
    :class:`CustomLossDefinitionError` saying which rule is broken (:class:`TorchRequiredError` without torch)."""
    try:
        import torch.fx  # noqa: F401  (only whether it imports)
    except ImportError:
        raise TorchRequiredError("create_custom_loss needs torch (it traces the loss with torch.fx); install it, "
                                 "or give forward_backward_custom a numpy loss object instead") from None
    name = _name_of(fn)
    inputs = _declared_inputs(fn, name, input_ranks)
    graph = _traced(fn, name)
    _check_nodes(name, graph)
    return LossHandle(name=name, inputs=inputs, session_id=session_id, graph=graph)


def _name_of(fn: Any) -> str:
    if not callable(fn):
        raise CustomLossDefinitionError(f"create_custom_loss takes a function, got {type(fn).__name__}")
    return str(getattr(fn, "__name__", type(fn).__name__))


def _declared_inputs(fn: Callable[..., Any], name: str, input_ranks: Any) -> tuple[CustomLossInput, ...]:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise CustomLossDefinitionError(f"create_custom_loss: the signature of {name} cannot be read") from None
    if not parameters or parameters[0].name != "logprobs":
        raise CustomLossDefinitionError(
            f"create_custom_loss: {name} must take logprobs first, then one parameter per loss_fn_inputs key it "
            "reads, as in def loss(logprobs, advantages)")
    if len(parameters) > _MAX_PARAMETERS:
        raise CustomLossDefinitionError(f"create_custom_loss: {name} takes {len(parameters)} parameters; a custom "
                                        f"loss takes at most {_MAX_PARAMETERS}, logprobs included")
    for parameter in parameters:
        if not _PARAMETER_NAME.fullmatch(parameter.name):
            raise CustomLossDefinitionError(
                f"create_custom_loss: parameter {parameter.name!r} of {name} must be a lowercase name of letters, "
                "digits and underscores (it names a loss_fn_inputs key)")
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            raise CustomLossDefinitionError(
                f"create_custom_loss: parameter {parameter.name!r} of {name} must be a plain positional parameter "
                "(no *args, **kwargs or keyword-only parameters)")
        if parameter.default is not parameter.empty:
            raise CustomLossDefinitionError(
                f"create_custom_loss: parameter {parameter.name!r} of {name} has a default; each parameter after "
                "logprobs names a loss_fn_inputs key every datum must have")
    names = [parameter.name for parameter in parameters]
    if not isinstance(input_ranks, Mapping) or set(input_ranks) != set(names):
        given = sorted(map(str, input_ranks)) if isinstance(input_ranks, Mapping) else type(input_ranks).__name__
        raise CustomLossDefinitionError(
            f"create_custom_loss: input_ranks must map each parameter of {name} ({', '.join(names)}) to its rank, "
            f"got {given}")
    for key in names:
        rank = input_ranks[key]
        if isinstance(rank, bool) or rank not in _RANKS:
            raise CustomLossDefinitionError(
                f"create_custom_loss: the rank of {key} must be 0 (a scalar), 1 ([T]) or 2 ([T, K]), got {rank!r}")
    if input_ranks["logprobs"] == 0:
        raise CustomLossDefinitionError("create_custom_loss: logprobs has the rank of target_tokens: 1 ([T]) or "
                                        "2 ([T, K]), not 0")
    ranks: dict[str, CustomLossInputRank] = dict(input_ranks)
    return tuple(CustomLossInput(name=key, rank=ranks[key]) for key in names)


def _traced(fn: Callable[..., Any], name: str) -> torch.fx.GraphModule:
    import torch
    import torch.fx

    class _NoModules(torch.fx.Tracer):
        def call_module(self, m: torch.nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
            raise CustomLossDefinitionError(
                f"create_custom_loss: {name} calls the module {type(m).__name__}; a custom loss cannot use "
                "torch.nn modules, only functions (torch.nn.functional)")

    tracer = _NoModules()
    try:
        graph = tracer.trace(fn)
    except CustomLossDefinitionError:
        raise
    except Exception as error:
        raise CustomLossDefinitionError(
            f"create_custom_loss: {name} cannot be traced by torch.fx ({type(error).__name__}: {error}); a custom "
            "loss may only call torch and math, and cannot branch on tensor values") from None
    return torch.fx.GraphModule(tracer.root, graph, name)


def _check_nodes(name: str, graph: torch.fx.GraphModule) -> None:
    import torch

    for node in graph.graph.nodes:
        if node.op == "call_function":
            module = str(getattr(node.target, "__module__", None) or "")
            if node.target is not builtins.getattr and module.split(".")[0] not in _FUNCTION_MODULES:
                called = getattr(node.target, "__qualname__", node.target)
                raise CustomLossDefinitionError(
                    f"create_custom_loss: {name} calls {called!r} from {module or 'an unknown module'}; a custom loss "
                    "may only call torch and math")
        elif node.op == "call_method":
            method = str(node.target)
            if method == "backward":
                raise CustomLossDefinitionError(f"create_custom_loss: {name} calls backward(); return the loss and "
                                                "forward_backward_custom differentiates it")
            if method in _HOST_METHODS:
                raise CustomLossDefinitionError(
                    f"create_custom_loss: {name} calls {method}(), which leaves torch; keep every value, metrics "
                    "included, a tensor")
            if not hasattr(torch.Tensor, method):
                raise CustomLossDefinitionError(f"create_custom_loss: {name} calls {method}(), which is not a "
                                                "torch.Tensor method")
        elif node.op == "get_attr":
            raise CustomLossDefinitionError(
                f"create_custom_loss: {name} uses a tensor captured from outside it; a custom loss may only read "
                "logprobs and the loss_fn_inputs it takes as parameters")
        elif node.op == "output":
            _check_output(name, node.args[0])


def _check_output(name: str, output: Any) -> None:
    import torch.fx

    if not (isinstance(output, tuple | list) and len(output) == 2):
        raise CustomLossDefinitionError(f"create_custom_loss: {name} must return (loss, metrics)")
    loss, metrics = output
    if not isinstance(loss, torch.fx.Node):  # a value computed from the inputs is a node of the graph
        raise CustomLossDefinitionError(
            f"create_custom_loss: {name} must return a loss computed from its inputs, got {loss!r}")
    if not isinstance(metrics, dict):
        raise CustomLossDefinitionError(f"create_custom_loss: {name} must return its metrics as a dict, got "
                                        f"{type(metrics).__name__}")
    for key, value in metrics.items():
        if not (isinstance(key, str) and _METRIC_NAME.fullmatch(key)):
            raise CustomLossDefinitionError(
                f"create_custom_loss: metric {key!r} of {name} must be named custom/<name>:sum or "
                "custom/<name>:mean, in lowercase (the suffix says how it combines over the datums)")
        if not isinstance(value, torch.fx.Node):
            raise CustomLossDefinitionError(
                f"create_custom_loss: metric {key!r} of {name} must be a tensor computed from the inputs, "
                f"got {value!r}")


# ---- forward_backward_custom with a handle ------------------------------------------------------------

def check_loss_inputs(handle: LossHandle, data: Sequence[Datum], session_id: str | None) -> None:
    """Refuse ``handle`` for a client of another session, or ``data`` whose datums lack an input the loss reads or
    have it at another rank than declared (``logprobs``: the rank of ``target_tokens``)."""
    if handle.session_id != session_id:
        raise LossHandleSessionError(
            f"loss {handle.name!r} was created in session {handle.session_id}; only clients of that session can "
            f"use it (this client's session is {session_id}): create it with this client's ServiceClient")
    logprobs, *inputs = handle.inputs
    for index, datum in enumerate(data):
        for declared, key in ((logprobs, "target_tokens"), *((item, item.name) for item in inputs)):
            tensor = datum.loss_fn_inputs.get(key)
            if tensor is None:
                raise InvalidInputError(f"datum {index} has no loss_fn_inputs[{key!r}], which loss {handle.name!r} "
                                        "reads")
            rank = 1 if tensor.shape is None else len(tensor.shape)
            if rank != declared.rank:
                what = "logprobs (the rank of target_tokens)" if declared is logprobs else key
                raise InvalidInputError(f"datum {index}: loss_fn_inputs[{key!r}] has rank {rank}, but loss "
                                        f"{handle.name!r} declared {what} with rank {declared.rank}")


def handle_loss(handle: LossHandle) -> Callable[[list[Datum], list[torch.Tensor]], tuple[Any, dict[str, float]]]:
    """The handle as a batch loss ``(data, logprobs) -> (loss, metrics)``: the traced graph run per datum on its
    logprobs (shaped as its ``target_tokens``) and inputs, the losses summed, each metric summed or averaged over
    the datums by its suffix. ``data`` passed :func:`check_loss_inputs`."""

    def batch_loss(data: list[Datum], logprobs: list[torch.Tensor]) -> tuple[Any, dict[str, float]]:
        total: Any = None
        sums: dict[str, float] = {}
        for index, (datum, flat) in enumerate(zip(data, logprobs, strict=True)):
            shape = datum.loss_fn_inputs["target_tokens"].shape
            datum_logprobs = flat if shape is None else flat.reshape(shape)
            inputs = [datum.loss_fn_inputs[key].to_torch() for key in handle.input_names]
            loss, metrics = handle.graph(datum_logprobs, *inputs)
            if loss.ndim != 0:
                raise ValueError(f"loss {handle.name!r} must return a scalar; datum {index} gave shape "
                                 f"{tuple(loss.shape)}")
            total = loss if total is None else total + loss
            for key, value in metrics.items():
                if value.numel() != 1:
                    raise ValueError(f"metric {key!r} of loss {handle.name!r} must be a scalar; datum {index} gave "
                                     f"shape {tuple(value.shape)}")
                sums[key] = sums.get(key, 0.0) + float(value.detach().reshape(()))
        combined = {key: value / len(data) if key.endswith(":mean") else value for key, value in sums.items()}
        return total, combined

    return batch_loss
