"""What an ``asample`` request asks of the model, checked, and what its result says, as JSON or protobuf.

Protocol 0.38's sample settings are all computed by the model (``tinker_actors.local.model.sampler``):
``topk_sample_logprobs``, ``target_prompt_logprobs`` (dense, or sparse CSR: only the listed cells ask),
``prompt_logprobs_last_n`` (also applies to ``topk_prompt_logprobs``), ``prompt_alt_tokens_k``; results carry
``prompt_cache_hit_tokens`` from the model's prefix cache. ``record_stability_info`` is accepted and records
nothing: the only loss that reads stability information, ``stable_reinforce``, is not implemented here (its
objective is not published; a forward_backward that asks for it is a 400), so there is nothing to record it for.

``stop``: ``None`` keeps end-of-text stopping; ``[]`` turns it off (generation runs to ``max_tokens``) when
the request speaks protocol 0.38 (it carries 0.38's sample fields or ``x-sdk-version``, as every request of
the official 0.38 SDK does). A 0.6.3 request's ``[]`` means what it meant then: no extra stops.

Bounds, as a top-k width is bounded (``WorkLimits.max_topk_prompt_logprobs``): ``topk_sample_logprobs``,
``prompt_alt_tokens_k`` and the number of distinct ids ``target_prompt_logprobs`` names.

The protobuf result is written from the model's arrays (:func:`~tinker_actors.wire.v0_38.array_results.
encode_sample_arrays`), the JSON one from domain types built without validation; each only when a poll
first asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pydantic

from tinker_actors.local.api.request_bodies import SampleAdded
from tinker_actors.local.engine.backend import BaseModelDescription, SampleArgs, SampleOutput
from tinker_actors.local.engine.future_store import Result
from tinker_actors.local.engine.work_limits import WorkLimits, check_at_most, check_token_ids
from tinker_actors.types import (
    EncodedTextChunk,
    SampledSequence,
    SampleRequest,
    SampleResponse,
    TensorData,
    encode_json,
)
from tinker_actors.types._base import problems_of
from tinker_actors.types.prompt_alt_tokens import PromptAltTokens
from tinker_actors.types.topk_logprobs import TopkLogprobs, topk_to_lists
from tinker_actors.wire.v0_38.array_results import SequenceArrays, TargetArrays, encode_sample_arrays, topk_matrices

__all__ = ["SampleAsk", "TargetLayout", "read_sample", "sample_result"]

_NO_ID = -1  # a target cell that asks for nothing


@dataclass(frozen=True, eq=False)
class TargetLayout:
    """How the request laid out ``target_prompt_logprobs``, so the result comes back the same way: ``asked``
    marks the cells (dense: of the ``shape``; sparse: of the listed values) that named an id."""

    shape: list[int]
    asked: npt.NDArray[np.bool_]
    crow: npt.NDArray[np.int64] | None = None
    col: npt.NDArray[np.int64] | None = None

    def result(self, logprobs: npt.NDArray[np.float32]) -> TargetArrays:
        """The logprobs of the asked cells in the request's layout (0.0 in the cells that asked nothing)."""
        values = np.zeros(self.asked.shape, dtype=np.float32)
        values[self.asked] = logprobs
        return TargetArrays(values.ravel(), self.shape, self.crow, self.col)


@dataclass(frozen=True, eq=False)
class SampleAsk:
    """A checked sample request: the model's arguments and what the result must hold."""

    args: SampleArgs
    target: TargetLayout | None = None


def read_sample(req: SampleRequest, added: SampleAdded, model: BaseModelDescription, limits: WorkLimits, *,
                speaks_038: bool) -> SampleAsk:
    """The model's arguments for ``req`` (with 0.38's ``added`` settings). Raises ``OverLimitError`` beyond a limit
    and ``ValueError`` for a setting that cannot be served (both a 400)."""
    tokens = _prompt(req, model, limits)
    check_at_most("topk_prompt_logprobs", req.topk_prompt_logprobs, limits.max_topk_prompt_logprobs)
    for name in ("topk_sample_logprobs", "prompt_alt_tokens_k"):
        value = getattr(added, name)
        if value < 0:
            raise ValueError(f"{name} must be 0 or greater, got {value}")
        check_at_most(name, value, limits.max_topk_prompt_logprobs)
    last_n = added.prompt_logprobs_last_n
    if last_n is not None:
        if not req.prompt_logprobs:
            raise ValueError("prompt_logprobs_last_n needs prompt_logprobs")
        if not 1 <= last_n <= len(tokens) - 1:
            raise ValueError(f"prompt_logprobs_last_n must be between 1 and the prompt length - 1 ({len(tokens) - 1}), "
                             f"got {last_n}")
    target = rows = ids = None
    if added.target_prompt_logprobs is not None:
        target, rows, ids = _targets(added.target_prompt_logprobs, len(tokens), model, limits)
    params = req.sampling_params
    stop: list[str] | list[int] | None
    if params.stop is None or (not speaks_038 and not isinstance(params.stop, str) and len(params.stop) == 0):
        stop = None  # end-of-text stops
    else:
        stop = params.stop_strings() or params.stop_token_ids()  # [] from 0.38: nothing stops before max_tokens
    args = SampleArgs(
        prompt=tokens, num_samples=req.num_samples, max_tokens=params.max_tokens,
        temperature=float(params.temperature), top_k=params.top_k, top_p=float(params.top_p), stop=stop,
        seed=params.seed, prompt_logprobs=bool(req.prompt_logprobs), topk_prompt_logprobs=req.topk_prompt_logprobs,
        prompt_logprobs_last_n=last_n, topk_sample_logprobs=added.topk_sample_logprobs, target_rows=rows,
        target_token_ids=ids, prompt_alt_tokens_k=added.prompt_alt_tokens_k)
    return SampleAsk(args, target)


def _prompt(req: SampleRequest, model: BaseModelDescription, limits: WorkLimits) -> list[int]:
    """The prompt's tokens, within the limits. ``max_tokens`` and the prompt must each fit in the context
    window; whether both fit together is the model's to judge (a ``user`` error result)."""
    check_at_most("num_samples", req.num_samples, limits.max_num_samples)
    max_tokens = req.sampling_params.max_tokens
    if max_tokens is not None:
        check_at_most(f"max_tokens (the context window of {model.name})", max_tokens, model.context_window)
    stop = req.sampling_params.stop
    if stop is not None and not isinstance(stop, str):
        check_at_most("the number of stop sequences", len(stop), limits.max_stop_sequences)
    tokens: list[int] = []
    for chunk in req.prompt.chunks:
        if not isinstance(chunk, EncodedTextChunk):
            raise ValueError("the local service's text model cannot read image chunks")
        check_token_ids(chunk.tokens, model.vocab_size, "the prompt")
        tokens.extend(chunk.tokens)
    check_at_most(f"the prompt length (the context window of {model.name})", len(tokens), model.context_window)
    return tokens


def _targets(raw: dict[str, Any], length: int, model: BaseModelDescription, limits: WorkLimits
             ) -> tuple[TargetLayout, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The layout of ``target_prompt_logprobs`` and its asked cells as (row, token id) pairs."""
    try:
        tensor = TensorData.model_validate(raw)
    except pydantic.ValidationError as invalid:
        raise ValueError(f"target_prompt_logprobs: {problems_of(invalid)}") from None
    shape = tensor.shape
    if tensor.dtype != "int64":
        raise ValueError(f"target_prompt_logprobs must be an int64 tensor of token ids, got {tensor.dtype}")
    if shape is None or len(shape) != 2 or shape[0] != length - 1:
        raise ValueError(f"target_prompt_logprobs must be 2-D, [len(prompt) - 1 = {length - 1}, K], got shape {shape}")
    csr = tensor.csr_arrays()
    if csr is None:
        ids = tensor.to_numpy().astype(np.int64, copy=False).reshape(shape)
        asked = ids != _NO_ID
        rows = np.nonzero(asked)[0]
        layout = TargetLayout(list(shape), asked)
    else:
        values, crow, col = csr
        ids = values.astype(np.int64, copy=False)
        asked = ids != _NO_ID
        rows = np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(crow))[asked]
        layout = TargetLayout(list(shape), asked, crow.astype(np.int64, copy=False), col.astype(np.int64, copy=False))
    token_ids = ids[asked]
    if token_ids.size == 0:
        raise ValueError("target_prompt_logprobs names no token id (every cell is -1)")
    check_token_ids(token_ids, model.vocab_size, "target_prompt_logprobs")
    check_at_most("the number of distinct ids target_prompt_logprobs names", int(np.unique(token_ids).size),
                  limits.max_topk_prompt_logprobs)
    return layout, rows.astype(np.int64, copy=False), token_ids


def sample_result(output: SampleOutput, ask: SampleAsk) -> Result:
    """A sample result: JSON for 0.6.3 polls, protobuf for 0.38 ones, each encoded when first asked."""
    args = ask.args
    target = None
    if ask.target is not None and output.target_logprobs is not None:
        target = ask.target.result(output.target_logprobs)

    def protobuf() -> bytes:
        sequences = [SequenceArrays(s.stop_reason, s.tokens, s.logprobs, s.topk) for s in output.sequences]
        prompt_topk = None
        if args.topk_prompt_logprobs > 0 and output.topk_prompt_logprobs is not None:
            prompt_topk = topk_matrices(output.topk_prompt_logprobs)
        prompt = output.prompt_logprobs if args.prompt_logprobs else None
        return encode_sample_arrays(sequences, prompt_logprobs=prompt, topk_prompt_logprobs=prompt_topk,
                                    target=target, alt_tokens=output.alt_tokens,
                                    prompt_cache_hit_tokens=output.prompt_cache_hit_tokens).content

    tokens = sum(len(sequence.tokens) for sequence in output.sequences)
    prompt = len(output.prompt_logprobs or ()) * (1 + args.topk_prompt_logprobs)
    extra = tokens * args.topk_sample_logprobs + len(args.prompt) * args.prompt_alt_tokens_k
    return Result(lambda: encode_json(sample_response(output, ask, target)), protobuf=protobuf,
                  size_hint=24 * (tokens + prompt) + 8 * extra)


def sample_response(output: SampleOutput, ask: SampleAsk, target: TargetArrays | None = None) -> SampleResponse:
    """The domain response (what a JSON result says); fields not asked for are left unset."""
    args = ask.args
    sequences = []
    for s in output.sequences:
        fields: dict[str, Any] = {"stop_reason": s.stop_reason, "tokens": s.tokens, "logprobs": s.logprobs}
        if s.topk is not None:
            fields["topk_logprobs"] = topk_to_lists(TopkLogprobs(token_ids=s.topk[0], logprobs=s.topk[1]))
        sequences.append(SampledSequence.model_construct(**fields))
    response: dict[str, Any] = {"sequences": sequences}
    if args.prompt_logprobs and output.prompt_logprobs is not None:
        response["prompt_logprobs"] = output.prompt_logprobs
    if args.topk_prompt_logprobs > 0 and output.topk_prompt_logprobs is not None:
        response["topk_prompt_logprobs"] = output.topk_prompt_logprobs
    if target is not None:
        if target.crow is not None and target.col is not None:
            response["target_prompt_logprobs"] = TensorData.from_csr_arrays(target.values, target.crow, target.col,
                                                                            "float32", target.shape)
        else:
            response["target_prompt_logprobs"] = TensorData.from_flat_array(target.values, "float32", target.shape)
    if output.alt_tokens is not None:
        alt_tokens, alt_logprobs = output.alt_tokens
        shape = list(alt_tokens.shape)
        response["prompt_alt_tokens"] = PromptAltTokens.model_construct(
            tokens=TensorData.from_flat_array(alt_tokens.ravel(), "int64", shape),
            logprobs=TensorData.from_flat_array(alt_logprobs.ravel(), "float32", shape))
    if output.prompt_cache_hit_tokens:
        response["prompt_cache_hit_tokens"] = output.prompt_cache_hit_tokens
    return SampleResponse.model_construct(**response)
