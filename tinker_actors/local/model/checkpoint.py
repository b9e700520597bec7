"""LoRA state as a flat ``dict[str, np.ndarray]`` (what the server writes with ``np.savez``).

Keys::

    meta.format, meta.base_name           0-d unicode arrays
    meta.rank, meta.seed                  0-d int64
    meta.train_mlp/attn/unembed           0-d bool
    lora.<matrix>.a, lora.<matrix>.b      the adapters (``<matrix>`` e.g. ``layers.0.attn.wq``)
    adam.step                             0-d int64           (only with the optimizer state)
    adam.m.<matrix>.a, adam.v.<matrix>.b  Adam moments        (only with the optimizer state)

Every array is plain numeric or unicode, so ``np.load(..., allow_pickle=False)`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model.adam import AdamState
from tinker_actors.local.model.errors import IncompatibleCheckpoint
from tinker_actors.local.model.registry import BaseModelInfo, get_base_model
from tinker_actors.local.model.weights import MAX_LORA_RANK, lora_targets, matrix_shape

Array = npt.NDArray[Any]

STATE_FORMAT = "tinker-actors/lora-state/v1"


@dataclass(frozen=True)
class LoraConfig:
    """What a LoRA state was created with: enough to rebuild the trainer or sampler that owns it."""

    base_name: str
    rank: int
    seed: int
    train_mlp: bool
    train_attn: bool
    train_unembed: bool

    @property
    def info(self) -> BaseModelInfo:
        return get_base_model(self.base_name)

    def targets(self) -> list[str]:
        return lora_targets(
            self.info, train_mlp=self.train_mlp, train_attn=self.train_attn, train_unembed=self.train_unembed
        )


def param_key(matrix: str, part: str) -> str:
    """Flat name of one adapter factor: ``<matrix>.a`` or ``<matrix>.b``."""
    return f"{matrix}.{part}"


def param_shapes(config: LoraConfig) -> dict[str, tuple[int, int]]:
    shapes = {}
    for matrix in config.targets():
        d_in, d_out = matrix_shape(config.info, matrix)
        shapes[param_key(matrix, "a")] = (d_in, config.rank)
        shapes[param_key(matrix, "b")] = (config.rank, d_out)
    return shapes


def encode_state(config: LoraConfig, params: Mapping[str, Array], adam: AdamState | None) -> dict[str, Array]:
    """Copies of the adapters (and Adam moments) with the config, as flat arrays."""
    state: dict[str, Array] = {
        "meta.format": np.array(STATE_FORMAT),
        "meta.base_name": np.array(config.base_name),
        "meta.rank": np.array(config.rank, dtype=np.int64),
        "meta.seed": np.array(config.seed, dtype=np.int64),
        "meta.train_mlp": np.array(config.train_mlp),
        "meta.train_attn": np.array(config.train_attn),
        "meta.train_unembed": np.array(config.train_unembed),
    }
    for key, value in params.items():
        state[f"lora.{key}"] = value.copy()
    if adam is not None:
        state["adam.step"] = np.array(adam.step, dtype=np.int64)
        for key, value in params.items():
            state[f"adam.m.{key}"] = adam.first.get(key, np.zeros_like(value)).copy()
            state[f"adam.v.{key}"] = adam.second.get(key, np.zeros_like(value)).copy()
    return state


def _scalar(arrays: Mapping[str, Array], key: str) -> Any:
    if key not in arrays:
        raise IncompatibleCheckpoint(f"LoRA state is missing {key!r}")
    value = np.asarray(arrays[key])
    if value.shape != ():
        raise IncompatibleCheckpoint(f"LoRA state entry {key!r} must be a scalar, got shape {value.shape}")
    return value.item()


def read_lora_config(arrays: Mapping[str, Array]) -> LoraConfig:
    """The config stored in a LoRA state (raises IncompatibleCheckpoint if it is not one)."""
    if _scalar(arrays, "meta.format") != STATE_FORMAT:
        raise IncompatibleCheckpoint(f"not a {STATE_FORMAT} state: {_scalar(arrays, 'meta.format')!r}")
    base_name = str(_scalar(arrays, "meta.base_name"))
    try:
        base = get_base_model(base_name).name
    except ValueError as error:
        raise IncompatibleCheckpoint(f"LoRA state is for an unknown base model: {error}") from error
    rank = int(_scalar(arrays, "meta.rank"))
    if not 1 <= rank <= MAX_LORA_RANK:
        raise IncompatibleCheckpoint(f"LoRA state has an invalid rank {rank}")
    return LoraConfig(
        base_name=base,
        rank=rank,
        seed=int(_scalar(arrays, "meta.seed")),
        train_mlp=bool(_scalar(arrays, "meta.train_mlp")),
        train_attn=bool(_scalar(arrays, "meta.train_attn")),
        train_unembed=bool(_scalar(arrays, "meta.train_unembed")),
    )


def has_optimizer_state(arrays: Mapping[str, Array]) -> bool:
    return "adam.step" in arrays


def decode_params(arrays: Mapping[str, Array], config: LoraConfig, dtype: np.dtype[Any]) -> dict[str, Array]:
    """The adapters of a state, checked against `config`'s shapes, as fresh `dtype` arrays."""
    return {key: _checked(arrays, f"lora.{key}", shape, dtype) for key, shape in param_shapes(config).items()}


def decode_adam(arrays: Mapping[str, Array], config: LoraConfig, dtype: np.dtype[Any]) -> AdamState:
    if not has_optimizer_state(arrays):
        raise IncompatibleCheckpoint("LoRA state has no optimizer state (it was saved without it)")
    step = int(_scalar(arrays, "adam.step"))
    if step < 0:
        raise IncompatibleCheckpoint(f"LoRA state has a negative Adam step {step}")
    shapes = param_shapes(config)
    return AdamState(
        step=step,
        first={key: _checked(arrays, f"adam.m.{key}", shape, dtype) for key, shape in shapes.items()},
        second={key: _checked(arrays, f"adam.v.{key}", shape, dtype) for key, shape in shapes.items()},
    )


def _checked(arrays: Mapping[str, Array], key: str, shape: tuple[int, int], dtype: np.dtype[Any]) -> Array:
    if key not in arrays:
        raise IncompatibleCheckpoint(f"LoRA state is missing {key!r}")
    value = np.asarray(arrays[key])
    if value.shape != shape:
        raise IncompatibleCheckpoint(f"LoRA state entry {key!r} has shape {value.shape}, expected {shape}")
    if not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
        raise IncompatibleCheckpoint(f"LoRA state entry {key!r} must hold finite floats")
    return value.astype(dtype, copy=True)
