"""Training requests and results: models, forward/backward, optimizer steps (WIRE-PROTOCOL §2.1, §3.3-3.6)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

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


class AdamParams(RequestModel):
    """Adam settings. Only fields you set are sent; the server fills the 0.6.3 defaults.

    ``weight_decay`` and ``grad_clip_norm`` are newer-SDK fields: the local service honours them;
    leave them unset to talk to a 0.6.3-era server.
    """

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    @field_validator("learning_rate", "eps", "weight_decay", "grad_clip_norm")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value

    @field_validator("beta1", "beta2")
    @classmethod
    def _beta_range(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"Adam betas must be in [0, 1), got {value}")
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
