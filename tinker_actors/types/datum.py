"""Datum: one training example, with key-based dtype inference for plain lists (FEATURES D2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tinker_actors.errors import InvalidInputError, UnknownLossInputKeyError
from tinker_actors.types._base import RequestModel
from tinker_actors.types.model_input import ModelInput
from tinker_actors.types.provenance_spans import PromptProvenanceSpan, ProvenanceSpans, SampledProvenanceSpan
from tinker_actors.types.tensor import TensorData, TensorDtype

__all__ = ["LOSS_INPUT_DTYPES", "Datum", "datum_list", "to_tensor_data"]

# The keys whose plain-list values have a known dtype. Any other key needs an array or a TensorData.
LOSS_INPUT_DTYPES: dict[str, TensorDtype] = {
    "target_tokens": "int64",
    "weights": "float32",
    "advantages": "float32",
    "logprobs": "float32",
    "clip_low_threshold": "float32",
    "clip_high_threshold": "float32",
    "sequence_ratio_mask": "float32",
}
# 2-D torch tensors under these keys are sent sparse when that is smaller, as the official SDK 0.38 does.
_SPARSE_ELIGIBLE = frozenset({"target_tokens", "weights"})
_NUMPY_OF = {"int64": np.int64, "float32": np.float64}  # float lists keep their precision (see tensor.py)


def to_tensor_data(key: str, value: Any) -> Any:
    """Convert one ``loss_fn_inputs`` value: numpy, torch, or a plain list keyed by a known name (nested
    lists make a 2-D tensor, e.g. ``[N, K]`` target tokens; they must be rectangular).

    Anything else (a TensorData, a dict from JSON) is left for pydantic to validate.
    """
    if isinstance(value, TensorData):
        return value
    if isinstance(value, np.ndarray):
        return TensorData.from_numpy(value)
    if isinstance(value, list | tuple):
        dtype = LOSS_INPUT_DTYPES.get(key)
        if dtype is None:
            known = ", ".join(sorted(LOSS_INPUT_DTYPES))
            raise UnknownLossInputKeyError(
                f"cannot infer the dtype of loss input {key!r} from a plain list (known keys: {known}); "
                "pass a numpy array or TensorData instead")
        if value and isinstance(value[0], list | tuple):
            try:
                array = np.asarray(value, dtype=_NUMPY_OF[dtype])
            except (ValueError, TypeError, OverflowError):
                raise InvalidInputError(f"loss input {key!r} must be a rectangular array of numbers; ragged or "
                                        "non-numeric nested lists are not supported") from None
            return TensorData.from_numpy(array)
        return TensorData.from_list(list(value), dtype)
    if type(value).__module__.startswith("torch"):
        if key in _SPARSE_ELIGIBLE and value.ndim == 2:
            return TensorData.from_torch_sparse(value)
        return TensorData.from_torch(value)
    return value


class Datum(RequestModel):
    """``model_input`` and the named tensors the loss reads (``loss_fn_inputs``).

    ``model_input_spans`` / ``loss_fn_input_spans`` (protocol 0.38): where the tokens came from, for the losses
    that need it (the Tinker service's ``stable_reinforce``); attach them with :meth:`with_provenance`. They come
    as a pair (both or neither), each a list of :class:`PromptProvenanceSpan` / :class:`SampledProvenanceSpan`;
    anything else raises :class:`InvalidInputError` here, as the official types refuse it.
    """

    loss_fn_inputs: dict[str, TensorData]
    model_input: ModelInput
    model_input_spans: ProvenanceSpans | None = None
    """Runs tiling the input tokens (their lengths sum to ``model_input.length``)."""
    loss_fn_input_spans: ProvenanceSpans | None = None
    """Runs tiling ``loss_fn_inputs["target_tokens"]``."""

    def __init__(self, **data: Any) -> None:
        # Converted before pydantic runs, so a bad key raises our typed error (a KeyError, as in the
        # official SDK) instead of being folded into a pydantic ValidationError.
        inputs = data.get("loss_fn_inputs")
        if isinstance(inputs, dict):
            data["loss_fn_inputs"] = {key: to_tensor_data(key, value) for key, value in inputs.items()}
        for name in _SPAN_FIELDS:
            _check_span_types(name, data.get(name))
        if (data.get("model_input_spans") is None) != (data.get("loss_fn_input_spans") is None):
            raise InvalidInputError("a Datum's provenance comes as a pair: set both model_input_spans and "
                                    "loss_fn_input_spans, or neither (Datum.with_provenance sets both)")
        super().__init__(**data)

    def with_provenance(self, model_input: Sequence[PromptProvenanceSpan | SampledProvenanceSpan],
                        loss_fn_inputs: Sequence[PromptProvenanceSpan | SampledProvenanceSpan]) -> Datum:
        """A copy carrying both span lists: ``model_input`` tiles the input tokens, ``loss_fn_inputs`` tiles
        ``loss_fn_inputs["target_tokens"]`` (when it is 1-D). A miscount, or a run that is not a
        :class:`PromptProvenanceSpan` / :class:`SampledProvenanceSpan`, raises :class:`InvalidInputError` here,
        before anything is sent."""
        _check_span_types("model_input", model_input)
        _check_span_types("loss_fn_inputs", loss_fn_inputs)
        _check_tiling("model_input", model_input, self.model_input.length)
        targets = self.loss_fn_inputs.get("target_tokens")
        if targets is not None and targets.shape is not None and len(targets.shape) == 1:
            _check_tiling("loss_fn_inputs", loss_fn_inputs, targets.shape[0])
        return Datum(model_input=self.model_input, loss_fn_inputs=self.loss_fn_inputs,
                     model_input_spans=list(model_input), loss_fn_input_spans=list(loss_fn_inputs))


_SPAN_FIELDS = ("model_input_spans", "loss_fn_input_spans")


def _check_span_types(name: str, spans: object) -> None:
    """``spans`` is None or a list (or tuple) of span objects; a dict is refused too (it could be either kind)."""
    if spans is None:
        return
    if not isinstance(spans, list | tuple):
        raise InvalidInputError(f"{name} is a list of PromptProvenanceSpan or SampledProvenanceSpan, got "
                                f"{type(spans).__name__}")
    for index, span in enumerate(spans):
        if not isinstance(span, PromptProvenanceSpan | SampledProvenanceSpan):
            raise InvalidInputError(f"{name}[{index}] must be a PromptProvenanceSpan or SampledProvenanceSpan, "
                                    f"got {type(span).__name__}")


def _check_tiling(name: str, spans: Sequence[PromptProvenanceSpan | SampledProvenanceSpan], length: int) -> None:
    covered = sum(span.length for span in spans)
    if covered != length:
        raise InvalidInputError(f"with_provenance: the {name} spans cover {covered} positions but the field has "
                                f"{length}; the runs must tile it exactly")


def datum_list(data: object, call: str) -> list[Datum]:
    """The ``data`` argument of a training call as a list, or :class:`InvalidInputError` saying what was
    expected (raised by the call, before anything is queued).

    Any iterable of Datum is taken (list, tuple, generator), as the official SDK does. Refused: a single
    Datum (the official SDK fails on it with an AttributeError), a dict or string, an element that is not a
    Datum, and loss inputs holding NaN or an infinity (JSON cannot carry them: the official SDK sends
    ``null`` and the server refuses the request with an error that does not say why).
    """
    if isinstance(data, Datum):
        raise InvalidInputError(f"{call} takes a list of Datum, got a single Datum: pass [datum]")
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Iterable):
        raise InvalidInputError(f"{call} takes a list of Datum, got {type(data).__name__}")
    batch = list(data)
    for index, datum in enumerate(batch):
        if not isinstance(datum, Datum):
            raise InvalidInputError(f"{call}: data[{index}] is a {type(datum).__name__}, not a Datum")
        for key, tensor in datum.loss_fn_inputs.items():
            position = tensor.first_non_finite()
            if position is not None:
                raise InvalidInputError(
                    f"{call}: data[{index}].loss_fn_inputs[{key!r}] holds {tensor.data[position]} at position "
                    f"{position}; loss inputs must be finite numbers")
    return batch
