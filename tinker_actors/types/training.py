"""Training requests and results: models, forward/backward, optimizer steps (WIRE-PROTOCOL §2.1, §3.3-3.6)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import field_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, ResponseModel
from tinker_actors.types.datum import Datum
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

LossFnType = Literal["cross_entropy", "importance_sampling", "ppo", "cispo", "dro"]
LOSS_FUNCTIONS: tuple[str, ...] = ("cross_entropy", "importance_sampling", "ppo", "cispo", "dro")


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


def _adam_problem(name: str, value: float) -> str | None:
    """What is wrong with one Adam setting, or None. Every value must be finite (JSON has no NaN, and the
    official SDK sends ``null``); ``eps`` must be positive: with ``eps=0`` every parameter whose gradient is
    still zero (at the first step, the whole LoRA ``A`` matrix) is updated by 0/0, filling it with NaN."""
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if name in ("beta1", "beta2"):
        return None if 0.0 <= value < 1.0 else f"must be in [0, 1), got {value}"
    if name == "eps":
        return None if value > 0 else f"must be > 0, got {value} (with eps=0, parameters without gradient " \
                                      f"are updated by 0/0 = NaN)"
    return None if value >= 0 else f"must not be negative, got {value}"


class AdamParams(RequestModel):
    """Adam settings. Only fields you set are sent; the server fills the 0.6.3 defaults.

    ``weight_decay`` and ``grad_clip_norm`` are newer-SDK fields: the local service honours them;
    leave them unset to talk to a 0.6.3-era server. A value out of range (NaN, infinity, a negative rate,
    ``eps <= 0``, a beta outside [0, 1)) raises :class:`InvalidInputError` here, at construction.
    """

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as invalid:
            raise InvalidInputError(f"invalid AdamParams: {_problems(invalid)}") from None

    @field_validator("learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm")
    @classmethod
    def _in_range(cls, value: float, info: pydantic.ValidationInfo) -> float:
        problem = _adam_problem(str(info.field_name), value)
        if problem is not None:
            raise ValueError(problem)
        return value


def _problems(invalid: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: "
                     f"{str(error['msg']).removeprefix('Value error, ')}" for error in invalid.errors())


def adam_params_of(value: object, call: str = "optim_step") -> AdamParams:
    """The AdamParams a call was given (a dict of its fields is taken too, as the official SDK's pydantic
    does), checked again in case it was built without validation; else :class:`InvalidInputError`."""
    if isinstance(value, Mapping):
        return AdamParams(**value)
    if not isinstance(value, AdamParams):
        raise InvalidInputError(f"{call} takes an AdamParams (e.g. AdamParams(learning_rate=1e-4)), "
                                f"got {type(value).__name__}")
    for name in AdamParams.model_fields:
        problem = _adam_problem(name, getattr(value, name))
        if problem is not None:
            raise InvalidInputError(f"invalid AdamParams: {name}: {problem}")
    return value


class CreateModelRequest(RequestModel):
    session_id: str
    model_seq_id: int
    base_model: str
    user_metadata: dict[str, Any] | None = None
    lora_config: LoraConfig | None = None
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


class ForwardBackwardInput(RequestModel):
    data: list[Datum]
    loss_fn: LossFnType
    loss_fn_config: dict[str, float] | None = None


def check_loss(loss_fn: object, loss_fn_config: object, call: str) -> None:
    """A known loss name and a config of finite numbers, or :class:`InvalidInputError`. The call checks
    this even for an empty batch, which sends nothing; the config is converted as pydantic does for the
    official SDK (a numeric string is taken), then NaN and infinities are refused."""
    try:
        checked = ForwardBackwardInput(data=[], loss_fn=loss_fn, loss_fn_config=loss_fn_config)
    except pydantic.ValidationError as invalid:
        raise InvalidInputError(f"invalid {call} input: {_problems(invalid)}") from None
    for key, value in (checked.loss_fn_config or {}).items():
        if not math.isfinite(value):
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
    adam_params: AdamParams
    model_id: str
    seq_id: int | None = None
    type: Literal["optim_step"] = "optim_step"


class OptimStepResponse(ResponseModel):
    metrics: dict[str, float] | None = None


class UnloadModelRequest(RequestModel):
    model_id: str
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(ResponseModel):
    model_id: str
    type: Literal["unload_model"] | None = None
