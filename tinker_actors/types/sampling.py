"""Sampling requests and results (WIRE-PROTOCOL §2.1, §3.5)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, field_validator, model_validator

from tinker_actors.types._array_backed import ArrayBacked, listed
from tinker_actors.types._base import RequestModel, ResponseModel
from tinker_actors.types.model_input import ModelInput
from tinker_actors.types.prompt_alt_tokens import PromptAltTokens
from tinker_actors.types.tensor import TensorData
from tinker_actors.types.topk_logprobs import TopkLogprobs, topk_from_lists, topk_to_lists

__all__ = [
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "SampleRequest",
    "SampleResponse",
    "SampledSequence",
    "SamplingParams",
    "StopReason",
]

StopReason = Literal["length", "stop"]


class SamplingParams(ResponseModel):
    """How to sample. Only fields you set are sent; the server defaults the rest.

    Unknown fields are ignored, not rejected (as in the official SDK), so settings from newer SDKs
    pass through harmlessly. Values are checked here, before anything goes on the wire.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    max_tokens: int | None = None
    seed: int | None = None
    stop: str | Sequence[str] | Sequence[int] | None = None
    temperature: float = 1
    top_k: int = -1
    top_p: float = 1

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens_positive(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError(f"max_tokens must not be negative, got {value}")
        return value

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"temperature must not be negative, got {value}")
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k_range(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError(f"top_k must be -1 (no limit) or at least 1, got {value}")
        return value

    @field_validator("top_p")
    @classmethod
    def _top_p_range(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {value}")
        return value

    def stop_strings(self) -> list[str]:
        """The stop sequences given as text."""
        if isinstance(self.stop, str):
            return [self.stop]
        if self.stop is None:
            return []
        return [s for s in self.stop if isinstance(s, str)]

    def stop_token_ids(self) -> list[int]:
        """The stop sequences given as token ids."""
        if self.stop is None or isinstance(self.stop, str):
            return []
        return [s for s in self.stop if isinstance(s, int)]


class CreateSamplingSessionRequest(RequestModel):
    session_id: str
    sampling_session_seq_id: int
    base_model: str | None = None
    model_path: str | None = None
    type: Literal["create_sampling_session"] = "create_sampling_session"


class CreateSamplingSessionResponse(ResponseModel):
    type: Literal["create_sampling_session"] = "create_sampling_session"
    sampling_session_id: str


class SampleRequest(RequestModel):
    num_samples: int = 1
    prompt: ModelInput
    sampling_params: SamplingParams
    base_model: str | None = None
    model_path: str | None = None
    sampling_session_id: str | None = None
    seq_id: int | None = None
    prompt_logprobs: bool | None = None
    topk_prompt_logprobs: int = 0
    # Protocol 0.38 (refused on 0.6.3, where they do not exist).
    topk_sample_logprobs: int = 0
    """The top-k logprobs of each sampled token (``SampledSequence.topk_logprobs``)."""
    target_prompt_logprobs: TensorData | None = None
    """Token ids whose prompt logprobs to return, int64 ``[len(prompt) - 1, K]`` (-1: nothing asked)."""
    prompt_alt_tokens_k: int = 0
    """Draw that many tokens at each prompt position after the first (``SampleResponse.prompt_alt_tokens``)."""
    prompt_logprobs_last_n: int | None = None
    """Score only the last N prompt tokens (the earlier ones are None); needs ``prompt_logprobs``, and N from 1
    to ``len(prompt) - 1``."""
    record_stability_info: bool | None = None
    """Have the server record stability information per sampled sequence, which training requests name by
    ``sequence_id`` in provenance spans (the Tinker service's ``stable_reinforce``). A SamplingClient sets it on
    every request when it was created with ``record_stability_info=True``."""
    type: Literal["sample"] = "sample"

    @field_validator("num_samples")
    @classmethod
    def _num_samples_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"num_samples must be at least 1, got {value}")
        return value

    @field_validator("topk_prompt_logprobs")
    @classmethod
    def _topk_non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"topk_prompt_logprobs must not be negative, got {value}")
        return value

    @model_validator(mode="after")
    def _has_prompt(self) -> SampleRequest:
        if not self.prompt.chunks:
            raise ValueError("the prompt is empty")
        last_n = self.prompt_logprobs_last_n
        if last_n is not None:  # the official SDK leaves these checks to the server (a 400)
            if not self.prompt_logprobs:
                raise ValueError("prompt_logprobs_last_n needs prompt_logprobs=True")
            if not 1 <= last_n <= self.prompt.length - 1:
                raise ValueError(f"prompt_logprobs_last_n must be between 1 and the prompt length - 1 "
                                 f"({self.prompt.length - 1}), got {last_n}")
        return self


# Arrays shorter than this become lists at once: holding them and making the list on first read costs
# more than tolist() itself for a typical short sample (measured: bench/bench_wire_038.py --samples).
_HELD_FROM = 256


def _list_of(array: npt.NDArray[Any]) -> list[Any]:
    values: list[Any] = array.tolist()
    return values


# A top-k matrix held as one array: each cell a (token id, logprob) pair, as the wire's two matrices hold them.
TOPK_PAIR = np.dtype([("token_id", "<i4"), ("logprob", "<f4")])


def topk_pairs(topk: TopkLogprobs) -> npt.NDArray[Any]:
    """The two ``(positions, k)`` matrices as one read-only array of :data:`TOPK_PAIR` cells (one copy)."""
    pairs = np.empty(topk.token_ids.shape, dtype=TOPK_PAIR)
    pairs["token_id"] = topk.token_ids
    pairs["logprob"] = topk.logprobs
    pairs.flags.writeable = False
    return pairs


def _topk_rows(pairs: npt.NDArray[Any]) -> list[list[tuple[int, float]] | None]:
    return topk_to_lists(TopkLogprobs(token_ids=pairs["token_id"], logprobs=pairs["logprob"]))


def _list_with_nones(array: npt.NDArray[Any]) -> list[float | None]:
    """Prompt logprobs: NaN marks a position without one (the first), which the list shows as None."""
    values: list[float | None] = array.tolist()
    for position in np.flatnonzero(np.isnan(array)).tolist():
        values[position] = None
    return values


class SampledSequence(ResponseModel, ArrayBacked):
    """One sampled sequence. Read from protocol 0.38 it holds numpy arrays (``tokens_np``, ``logprobs_np``,
    ``topk_logprobs_np``) and makes the lists ``tokens``, ``logprobs`` and ``topk_logprobs`` when they are first
    read."""

    _array_views: ClassVar[dict[str, Any]] = {"tokens": _list_of, "logprobs": _list_of, "topk_logprobs": _topk_rows}

    stop_reason: StopReason
    tokens: Annotated[list[int], listed(_list_of, list[int])]
    logprobs: Annotated[list[float] | None, listed(_list_of, list[float] | None)] = None
    sequence_id: str | None = None
    """The server's id of this sequence (protocol 0.38; None from older servers)."""
    topk_logprobs: Annotated[list[list[tuple[int, float]] | None] | None,
                             listed(_topk_rows, list[list[tuple[int, float]] | None] | None)] = None
    """Protocol 0.38: the top-k ``(token_id, logprob)`` pairs at each sampled position, most likely first, when
    ``SampleRequest.topk_sample_logprobs`` asked for them."""

    @classmethod
    def from_arrays(cls, stop_reason: StopReason, tokens: npt.NDArray[Any], logprobs: npt.NDArray[Any] | None = None,
                    sequence_id: str | None = None, topk: TopkLogprobs | None = None) -> SampledSequence:
        """A sequence of ``tokens`` (integers) and ``logprobs`` (floats, as many), and ``topk`` matrices (a row per
        token) when asked for, not checked (for a codec reading the wire). Long ones hold the arrays as they are
        (no copy: they should be read-only; the top-k as one copy of pairs); short ones hold lists at once,
        which costs less than making them later."""
        fields: dict[str, Any] = {"stop_reason": stop_reason}
        arrays: dict[str, npt.NDArray[Any]] = {}
        if topk is not None:
            if topk.token_ids.size < _HELD_FROM:
                fields["topk_logprobs"] = topk_to_lists(topk) if topk.token_ids.shape[0] else []
            else:
                arrays["topk_logprobs"] = topk_pairs(topk)
        if tokens.size < _HELD_FROM:
            fields["tokens"] = tokens.tolist()
            fields["logprobs"] = None if logprobs is None else logprobs.tolist()
        else:
            arrays["tokens"] = tokens
            if logprobs is None:
                fields["logprobs"] = None  # "set", as the wire said: not asked for
            else:
                arrays["logprobs"] = logprobs
        if sequence_id is not None:
            fields["sequence_id"] = sequence_id
        return cls._with_arrays(arrays, **fields)

    @property
    def tokens_np(self) -> npt.NDArray[np.int32]:
        """The tokens as a 1-D int32 array (read-only; no copy when read from protocol 0.38)."""
        held = self._held_array("tokens")
        return held if held is not None else np.asarray(self.tokens, dtype=np.int32)

    @property
    def logprobs_np(self) -> npt.NDArray[np.float32] | None:
        """The logprobs as a 1-D float32 array, or None when they were not asked for."""
        held = self._held_array("logprobs")
        if held is not None:
            return held
        return None if self.logprobs is None else np.asarray(self.logprobs, dtype=np.float32)

    @property
    def topk_logprobs_np(self) -> TopkLogprobs | None:
        """``topk_logprobs`` as two ``(num_tokens, k)`` matrices (int32 ids, float32 logprobs; read-only views when
        read from protocol 0.38), or None when they were not asked for."""
        held = self._held_array("topk_logprobs")
        if held is not None:
            return TopkLogprobs(token_ids=held["token_id"], logprobs=held["logprob"])
        return None if self.topk_logprobs is None else topk_from_lists(self.topk_logprobs)


class SampleResponse(ResponseModel, ArrayBacked):
    """A sample's sequences. Read from protocol 0.38, ``prompt_logprobs`` is held as an array
    (``prompt_logprobs_np``, NaN where the list has None) until it is read."""

    _array_views: ClassVar[dict[str, Any]] = {"prompt_logprobs": _list_with_nones}

    sequences: Sequence[SampledSequence]
    type: Literal["sample"] = "sample"
    prompt_logprobs: Annotated[list[float | None] | None, listed(_list_with_nones, list[float | None] | None)] = None
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
    # Protocol 0.38.
    target_prompt_logprobs: TensorData | None = None
    """The logprobs of the ids ``SampleRequest.target_prompt_logprobs`` named: float32, the request's shape and
    layout (the same CSR indices when it was sparse), 0.0 where it had -1."""
    prompt_alt_tokens: PromptAltTokens | None = None
    """The draws ``SampleRequest.prompt_alt_tokens_k`` asked for."""
    prompt_cache_hit_tokens: int = 0
    """Prompt tokens the server took from its prefix cache (counted once per prompt, whatever ``num_samples``)."""

    @classmethod
    def from_arrays(cls, sequences: Sequence[SampledSequence], prompt_logprobs: npt.NDArray[Any] | None = None,
                    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None, *,
                    target_prompt_logprobs: TensorData | None = None, prompt_alt_tokens: PromptAltTokens | None = None,
                    prompt_cache_hit_tokens: int = 0) -> SampleResponse:
        """A response with ``prompt_logprobs`` (floats, NaN where there is none), not checked (for a codec
        reading the wire): long ones held as they are (no copy), short ones as lists at once, as in
        :meth:`SampledSequence.from_arrays`. Fields left at None (or 0 cache hits) are not "set"."""
        fields: dict[str, Any] = {"sequences": sequences}
        if topk_prompt_logprobs is not None:
            fields["topk_prompt_logprobs"] = topk_prompt_logprobs
        if target_prompt_logprobs is not None:
            fields["target_prompt_logprobs"] = target_prompt_logprobs
        if prompt_alt_tokens is not None:
            fields["prompt_alt_tokens"] = prompt_alt_tokens
        if prompt_cache_hit_tokens:
            fields["prompt_cache_hit_tokens"] = prompt_cache_hit_tokens
        if prompt_logprobs is None:
            return cls._with_arrays({}, **fields)
        if prompt_logprobs.size < _HELD_FROM:
            return cls._with_arrays({}, prompt_logprobs=_list_with_nones(prompt_logprobs), **fields)
        return cls._with_arrays({"prompt_logprobs": prompt_logprobs}, **fields)

    @property
    def prompt_logprobs_np(self) -> npt.NDArray[np.float32] | None:
        """The prompt logprobs as a 1-D float32 array, NaN where there is none (the first position);
        None when they were not asked for."""
        held = self._held_array("prompt_logprobs")
        if held is not None:
            return held
        if self.prompt_logprobs is None:
            return None
        return np.array([math.nan if value is None else value for value in self.prompt_logprobs], dtype=np.float32)

    @property
    def topk_prompt_logprobs_np(self) -> TopkLogprobs | None:
        """``topk_prompt_logprobs`` as two ``(prompt_length, k)`` matrices (empty rows where a position has
        none), or None when they were not asked for."""
        return None if self.topk_prompt_logprobs is None else topk_from_lists(self.topk_prompt_logprobs)
