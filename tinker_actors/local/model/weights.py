"""Frozen base weights derived from a model's name, and the LoRA adapters trained on top of them.

Matrices use the row-vector convention: a linear layer maps ``x [.., d_in]`` to ``x @ W`` with
``W [d_in, d_out]``; its LoRA adapter adds ``scale * (x @ A) @ B`` with ``A [d_in, r]`` and ``B [r, d_out]``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model.registry import BaseModelInfo

Array = npt.NDArray[Any]

# LoRA scale is alpha / rank with a fixed alpha, so a rank-32 adapter has scale 1 (as in common LoRA
# setups) and changing the rank does not change the size of the first Adam updates much.
LORA_ALPHA = 32.0
MAX_LORA_RANK = 256

ATTN_MATRICES = ("wq", "wk", "wv", "wo")
MLP_MATRICES = ("w_in", "w_out")
UNEMBED = "unembed"


def layer_matrix(layer: int, block: str, matrix: str) -> str:
    return f"layers.{layer}.{block}.{matrix}"


def matrix_names(info: BaseModelInfo) -> list[str]:
    """Every linear layer of the model, in a fixed order (the order weights are drawn in)."""
    names = []
    for layer in range(info.n_layers):
        names += [layer_matrix(layer, "attn", m) for m in ATTN_MATRICES]
        names += [layer_matrix(layer, "mlp", m) for m in MLP_MATRICES]
    return [*names, UNEMBED]


def matrix_shape(info: BaseModelInfo, name: str) -> tuple[int, int]:
    d, f, v = info.d_model, info.d_mlp, info.vocab_size
    if name == UNEMBED:
        return d, v
    matrix = name.rsplit(".", 1)[1]
    return {"w_in": (d, f), "w_out": (f, d)}.get(matrix, (d, d))


def lora_targets(info: BaseModelInfo, *, train_mlp: bool, train_attn: bool, train_unembed: bool) -> list[str]:
    """The matrices that get adapters for a LoRA config (embeddings and norms are never trained)."""
    chosen = []
    for name in matrix_names(info):
        if name == UNEMBED:
            wanted = train_unembed
        elif ".attn." in name:
            wanted = train_attn
        else:
            wanted = train_mlp
        if wanted:
            chosen.append(name)
    return chosen


@dataclass(frozen=True, eq=False)
class BaseWeights:
    """The frozen part of a model. Arrays are read-only and shared between trainers and samplers."""

    info: BaseModelInfo
    embed: Array  # [vocab, d_model]
    positions: Array  # [context_window, d_model]
    matrices: Mapping[str, Array]
    logit_bias: Array | None = None  # [vocab], added to the logits (see END_OF_TEXT_LOGIT_OFFSET)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.embed.dtype


# Added to the end-of-text logit of the base models: a random network would otherwise end text at any
# token (about 1 in 200 for tiny-byte), where a pretrained model mid-document almost never does. With it,
# end-of-text (which stops sampling unless stop=[]) comes from training, not chance (~1e-6 per token).
END_OF_TEXT_LOGIT_OFFSET = -8.0


def name_seed(name: str, purpose: str) -> int:
    """A stable 64-bit seed from a string (hashlib, never hash(): that one changes per process)."""
    digest = hashlib.sha256(f"tinker-actors/local-model/{purpose}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _draw_base_weights(info: BaseModelInfo) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    rng = np.random.default_rng(name_seed(info.name, "base-weights"))
    drawn = {
        "embed": rng.standard_normal((info.vocab_size, info.d_model)),
        "positions": 0.3 * rng.standard_normal((info.context_window, info.d_model)),
    }
    for name in matrix_names(info):
        d_in, d_out = matrix_shape(info, name)
        # 1/sqrt(fan_in) keeps activations O(1); the residual writes are damped by the depth so the
        # random network stays well conditioned (its inputs are RMS-normalised anyway).
        std = 1.0 / np.sqrt(d_in)
        if name.endswith((".wo", ".w_out")):
            std /= np.sqrt(2.0 * info.n_layers)
        drawn[name] = std * rng.standard_normal((d_in, d_out))
    return drawn


@functools.cache
def base_weights(info: BaseModelInfo, dtype_name: str = "float32") -> BaseWeights:
    """The frozen weights of `info`, identical in every process (drawn in float64, then cast)."""
    dtype = np.dtype(dtype_name)
    drawn = {key: value.astype(dtype) for key, value in _draw_base_weights(info).items()}
    for array in drawn.values():
        array.setflags(write=False)
    embed = drawn.pop("embed")
    positions = drawn.pop("positions")
    bias = np.zeros(info.vocab_size, dtype=dtype)
    bias[info.eos_token_id] = END_OF_TEXT_LOGIT_OFFSET
    bias.setflags(write=False)
    return BaseWeights(info=info, embed=embed, positions=positions, matrices=drawn, logit_bias=bias)


@dataclass(eq=False)
class LoraPair:
    """One adapter: ``delta W = scale * a @ b``."""

    a: Array  # [d_in, rank]
    b: Array  # [rank, d_out]


def init_lora(
    info: BaseModelInfo, targets: list[str], rank: int, seed: int, dtype: np.dtype[Any]
) -> dict[str, LoraPair]:
    """Fresh adapters: A random (seeded), B zero, so a new adapter leaves the base model unchanged."""
    adapters = {}
    for name in targets:
        # One generator per matrix, so an adapter's init does not depend on which others exist.
        rng = np.random.default_rng([seed % 2**63, name_seed(f"{info.name}/{name}", "lora")])
        d_in, d_out = matrix_shape(info, name)
        a = rng.standard_normal((d_in, rank)) / np.sqrt(d_in)
        adapters[name] = LoraPair(a=a.astype(dtype), b=np.zeros((rank, d_out), dtype=dtype))
    return adapters


def lora_scale(rank: int) -> float:
    return LORA_ALPHA / rank
