"""Optimizers: the family chosen when a model is created (``optimizer_config``) and each step's settings.

As in the official SDK 0.38 (``tinker.types.optimizer``): a model is created with an optimizer family that
it keeps for life (``CreateModelRequest.optimizer_config``, default Adam(W)); each ``optim_step`` carries
that family's settings (:class:`AdamParams`, or :class:`DimuonParams`). Only Adam is implemented here: a
Dimuon model or step is refused with :class:`~tinker_actors.errors.UnsupportedFeatureError` when the request
is built (``types/unsupported.py``). The classes exist so that 0.38 code imports and builds them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import pydantic
from pydantic import ConfigDict, Field, SerializeAsAny, field_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, problems_of
from tinker_actors.types.unsupported import refuse_not_built

__all__ = [
    "AdamOptimizerConfig",
    "AdamParams",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "OptimParams",
    "OptimParamsBase",
    "OptimizerConfig",
    "OptimizerConfigBase",
    "adam_params_of",
]


class OptimizerConfigBase(RequestModel):
    """An optimizer family, named by ``type``; any other field is the family's own (kept as given)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str


class AdamOptimizerConfig(OptimizerConfigBase):
    """Adam with decoupled weight decay, the default (its settings come with each step: :class:`AdamParams`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["adamw"] = "adamw"


class DimuonOptimizerConfig(OptimizerConfigBase):
    """The Dimuon optimizer (not supported yet by tinker-actors: a model created with it is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["dimuon"] = "dimuon"
    version: Literal[1] = 1


OptimizerConfig: TypeAlias = AdamOptimizerConfig | SerializeAsAny[OptimizerConfigBase]
"""What ``optimizer_config`` takes: Adam, or another family (written with all its fields)."""


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
            raise InvalidInputError(f"invalid AdamParams: {problems_of(invalid)}") from None

    @field_validator("learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm")
    @classmethod
    def _in_range(cls, value: float, info: pydantic.ValidationInfo) -> float:
        problem = _adam_problem(str(info.field_name), value)
        if problem is not None:
            raise ValueError(problem)
        return value


class OptimParamsBase(RequestModel):
    """One step's settings for a non-Adam optimizer family, named by ``type``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: str


class DimuonParams(OptimParamsBase):
    """One Dimuon step's settings (not supported yet by tinker-actors: an ``optim_step`` with it is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: Literal["dimuon"] = "dimuon"
    learning_rate: float = Field(ge=0)
    grad_clip_norm: float = 0.0
    """Nonpositive: no clipping."""
    beta1: float = Field(default=0.9, ge=0, lt=1)


OptimParams: TypeAlias = AdamParams | SerializeAsAny[OptimParamsBase]
"""What ``optim_step`` takes in 0.38: Adam's settings, or another family's."""


def adam_params_of(value: object, call: str = "optim_step") -> AdamParams:
    """The AdamParams a call was given (a dict of its fields is taken too, as the official SDK's pydantic
    does), checked again in case it was built without validation; else :class:`InvalidInputError`
    (:class:`~tinker_actors.errors.UnsupportedFeatureError` for another optimizer's settings)."""
    refuse_not_built("OptimStepRequest", {"optim_params": value})
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
