"""Training requests and results: models, forward/backward, optimizer steps (WIRE-PROTOCOL §2.1, §3.3-3.6)."""

from __future__ import annotations

import math
from typing import Any, Literal

import pydantic
from pydantic import field_validator, model_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, ResponseModel, problems_of
from tinker_actors.types.datum import Datum
from tinker_actors.types.optimizer import AdamOptimizerConfig, AdamParams, OptimizerConfig, adam_params_of
from tinker_actors.types.tensor import TensorData

__all__ = [
    "LOSS_FUNCTIONS",
    "AdamParams",
    "CreateModelRequest",
    "CreateModelResponse",
    "ForwardBackwardInput",
    "ForwardBackwardOutput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "GetInfoRequest",
    "GetInfoResponse",
    "LoraConfig",
    "LossFnType",
    "ModelData",
    "OptimStepRequest",
    "OptimStepResponse",
    "UnloadModelRequest",
    "UnloadModelResponse",
    "adam_params_of",
    "check_loss",
]

LossFnType = Literal["cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce",
                     "custom"]
"""The losses of the official SDK 0.38. ``stable_reinforce`` is sent as the official SDK sends it (protocol 0.38; the
Tinker service computes it, the local service answers 400: its objective is not published); ``custom`` (server-side
custom losses) is refused when a request asks for it, until it is built (``types/unsupported.py``)."""
LOSS_FUNCTIONS: tuple[str, ...] = ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro")
"""The losses of the 0.6.3 wire; 0.38's ``gspo`` may be asked for too (``LossFnType``; the local service
computes it)."""


class LoraConfig(RequestModel):
    rank: int
    seed: int | None = None
    train_unembed: bool = True
    train_mlp: bool = True
    train_attn: bool = True

    @field_validator("rank")
    @classmethod
    def _positive_rank(cls, rank: int) -> int:
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        return rank


class CreateModelRequest(RequestModel):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfig | None = None
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """The optimizer the model keeps for life (protocol 0.38; only Adam is supported here). Not sent unless set
    by protocol 0.6.3, which has no such field."""
    type: Literal["create_model"] = "create_model"


class CreateModelResponse(ResponseModel):
    model_id: str
    type: Literal["create_model"] = "create_model"


class GetInfoRequest(RequestModel):
    model_id: str
    type: Literal["get_info"] = "get_info"


class ModelData(ResponseModel):
    arch: str | None = None
    model_name: str | None = None
    tokenizer_id: str | None = None


class GetInfoResponse(ResponseModel):
    type: Literal["get_info"] | None = None
    model_data: ModelData
    model_id: str
    is_lora: bool | None = None
    lora_rank: int | None = None
    model_name: str | None = None
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """The model's optimizer family (protocol 0.38; Adam when the server does not say)."""


class ForwardBackwardInput(RequestModel):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float | str] | None = None
    """Loss settings; values may be text since protocol 0.38 (``loss_fn_config_v2`` on its wire)."""


def check_loss(loss_fn: object, loss_fn_config: object, call: str) -> None:
    """A known loss name and a config of finite numbers or text, or :class:`InvalidInputError`. The call
    checks this even for an empty batch, which sends nothing; NaN and infinities are refused. Text stays
    text, as in the official SDK 0.38 (protocol 0.6.3's codec reads a numeric text as its number, as the
    0.6.3 SDK's pydantic did, and refuses other text)."""
    try:
        checked = ForwardBackwardInput(data=[], loss_fn=loss_fn, loss_fn_config=loss_fn_config)
    except pydantic.ValidationError as invalid:
        raise InvalidInputError(f"invalid {call} input: {problems_of(invalid)}") from None
    for key, value in (checked.loss_fn_config or {}).items():
        if not isinstance(value, str) and not math.isfinite(value):
            raise InvalidInputError(f"{call}: loss_fn_config[{key!r}] must be a finite number, got {value}")


class ForwardBackwardRequest(RequestModel):
    forward_backward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


class ForwardRequest(RequestModel):
    forward_input: ForwardBackwardInput
    model_id: str
    seq_id: int | None = None


class ForwardBackwardOutput(ResponseModel):
    """Per-datum outputs (``logprobs``, ``elementwise_loss``, ...) and ``name:reduction`` metrics."""

    loss_fn_output_type: str
    loss_fn_outputs: list[dict[str, TensorData]]
    metrics: dict[str, float]


class OptimStepRequest(RequestModel):
    """One optimizer step. ``optim_params=`` (the 0.38 name) is taken for ``adam_params``."""

    adam_params: AdamParams
    model_id: str
    seq_id: int | None = None
    type: Literal["optim_step"] = "optim_step"

    @model_validator(mode="before")
    @classmethod
    def _optim_params_is_adam_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and "optim_params" in data and "adam_params" not in data:
            data = dict(data)
            data["adam_params"] = data.pop("optim_params")
        return data

    @property
    def optim_params(self) -> AdamParams:
        """The step's settings under their 0.38 name (only Adam's exist here)."""
        return self.adam_params


class OptimStepResponse(ResponseModel):
    metrics: dict[str, float] | None = None


class UnloadModelRequest(RequestModel):
    model_id: str
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(ResponseModel):
    model_id: str
    type: Literal["unload_model"] | None = None
