"""The Tinker loss functions on per-token log-probabilities (WIRE-PROTOCOL §3.3).

Each loss is a sum over tokens of an elementwise term; the trainer only needs, per token, that term
and its derivative with respect to the token's log-probability ``logp`` (the rest is the chain rule
through the network). With ``r = exp(logp - q)`` (``q`` = the sampler's logprobs), ``A`` = advantages
and ``w`` = optional ``weights`` (ones when missing; they multiply every loss, which is what lets
``forward_backward_custom`` send any linear loss through ``cross_entropy``):

- ``cross_entropy``:       ``-w * logp``
- ``importance_sampling``: ``-w * r * A``
- ``ppo``:                 ``-w * min(r * A, clip(r, lo, hi) * A)``       (lo/hi default 0.8 / 1.2)
- ``cispo``:               ``-w * stopgrad(clip(r, lo, hi)) * A * logp`` (lo/hi default 0.0 / 4.0)
- ``dro``:                 ``-w * (A * logp - beta / 2 * (logp - q)**2)`` (beta default 0.1)

The clip bounds may also come per token as ``clip_low_threshold`` / ``clip_high_threshold`` loss
inputs, which then take precedence over the config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model.errors import InvalidModelInput

Array = npt.NDArray[Any]

LOSS_CONFIG_DEFAULTS: dict[str, dict[str, float]] = {
    "cross_entropy": {},
    "importance_sampling": {},
    "ppo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
    "cispo": {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0},
    "dro": {"beta": 0.1},
}
LOSS_FUNCTIONS = tuple(LOSS_CONFIG_DEFAULTS)

REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens",),
    **{name: ("target_tokens", "logprobs", "advantages") for name in LOSS_FUNCTIONS if name != "cross_entropy"},
}
OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {
    name: ("weights", "clip_low_threshold", "clip_high_threshold") if name in ("ppo", "cispo") else ("weights",)
    for name in LOSS_FUNCTIONS
}


def resolve_loss_config(loss_fn: str, config: Mapping[str, float] | None) -> dict[str, float]:
    """The config of `loss_fn` with defaults filled in; unknown losses or keys are user errors."""
    if loss_fn not in LOSS_CONFIG_DEFAULTS:
        raise InvalidModelInput(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(LOSS_FUNCTIONS)}")
    resolved = dict(LOSS_CONFIG_DEFAULTS[loss_fn])
    for key, value in (config or {}).items():
        if key not in resolved:
            allowed = ", ".join(resolved) or "none"
            raise InvalidModelInput(f"loss_fn_config key {key!r} is not used by {loss_fn} (allowed: {allowed})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidModelInput(f"loss_fn_config[{key!r}] must be a finite number, got {value!r}")
        resolved[key] = float(value)
    if resolved.get("clip_low_threshold", 0.0) > resolved.get("clip_high_threshold", math.inf):
        raise InvalidModelInput("loss_fn_config: clip_low_threshold must not exceed clip_high_threshold")
    if resolved.get("beta", 0.0) < 0:
        raise InvalidModelInput("loss_fn_config: beta must be >= 0")
    return resolved


@dataclass(frozen=True, eq=False)
class TokenLoss:
    """Per-token loss terms of one datum and d(total loss)/d(logp) for each token."""

    elementwise: Array
    d_logprobs: Array
    clipped: Array | None  # bool per token, for ppo/cispo clip statistics


def token_loss(loss_fn: str, logp: Array, inputs: Mapping[str, Array], config: Mapping[str, float]) -> TokenLoss:
    """Evaluates `loss_fn` on one datum's target log-probabilities ``logp [N]`` (validated inputs)."""
    weights = inputs.get("weights")
    w = np.ones_like(logp) if weights is None else weights.astype(logp.dtype, copy=False)
    if loss_fn == "cross_entropy":
        return TokenLoss(elementwise=-w * logp, d_logprobs=-w, clipped=None)

    q = inputs["logprobs"].astype(logp.dtype, copy=False)
    adv = inputs["advantages"].astype(logp.dtype, copy=False)
    if loss_fn == "dro":
        beta = config["beta"]
        diff = logp - q
        return TokenLoss(
            elementwise=-w * (adv * logp - 0.5 * beta * diff * diff),
            d_logprobs=-w * (adv - beta * diff),
            clipped=None,
        )

    with np.errstate(over="ignore"):  # an overflowing ratio is reported by the trainer as a user error
        ratio = np.exp(logp - q)
    if loss_fn == "importance_sampling":
        return TokenLoss(elementwise=-w * ratio * adv, d_logprobs=-w * ratio * adv, clipped=None)

    low = inputs.get("clip_low_threshold", np.asarray(config["clip_low_threshold"]))
    high = inputs.get("clip_high_threshold", np.asarray(config["clip_high_threshold"]))
    clipped_ratio = np.clip(ratio, low.astype(logp.dtype), high.astype(logp.dtype))
    if loss_fn == "ppo":
        unclipped_obj = ratio * adv
        clipped_obj = clipped_ratio * adv
        # min() takes the clipped objective only where it is strictly smaller; there the ratio is out
        # of range, the clipped term is constant in logp, and the token gets no gradient.
        use_unclipped = unclipped_obj <= clipped_obj
        return TokenLoss(
            elementwise=-w * np.minimum(unclipped_obj, clipped_obj),
            d_logprobs=np.where(use_unclipped, -w * unclipped_obj, 0.0).astype(logp.dtype),
            clipped=~use_unclipped,
        )
    if loss_fn == "cispo":
        return TokenLoss(
            elementwise=-w * clipped_ratio * adv * logp,
            d_logprobs=-w * clipped_ratio * adv,
            clipped=clipped_ratio != ratio,
        )
    raise InvalidModelInput(f"unknown loss_fn {loss_fn!r}")
