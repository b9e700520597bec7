"""Sampling requests and results (WIRE-PROTOCOL §2.1, §3.5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, field_validator, model_validator

from tinker_actors.types._base import RequestModel, ResponseModel
from tinker_actors.types.model_input import ModelInput

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
        return self


class SampledSequence(ResponseModel):
    stop_reason: StopReason
    tokens: list[int]
    logprobs: list[float] | None = None
    sequence_id: str | None = None
    """The server's id of this sequence (protocol 0.38; None from older servers)."""


class SampleResponse(ResponseModel):
    sequences: Sequence[SampledSequence]
    type: Literal["sample"] = "sample"
    prompt_logprobs: list[float | None] | None = None
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
