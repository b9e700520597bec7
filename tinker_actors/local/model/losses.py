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
- ``gspo``:                ``-w * min(s * A, clip(s, lo, hi) * A)``       (lo/hi default 0.8 / 1.2)

``gspo`` is GSPO-token (Zheng et al., 2025, as the Tinker docs define it): one importance ratio per
sequence, ``s = exp(mean over the tokens M of (logp - q))`` with ``M`` the positions its
``sequence_ratio_mask`` marks (non-zero); every token carries ``s``'s value but only the gradient of its own
log-probability (``s_t = sg(s) * exp(logp_t - sg(logp_t))``), so ``d loss / d logp_t = -w * s * A`` where
the unclipped term is the smaller one, else 0. With one advantage for the whole sequence and every token
in ``M`` this is exactly the gradient of the sequence-level objective.

``cross_entropy`` also takes 2-D ``target_tokens`` and ``weights`` of shape ``[N, K]`` (K targets per
position, e.g. a teacher's top-K tokens for distillation): ``-sum w[t, k] * logp(x[t, k])``, and its
``logprobs`` output is ``[N, K]`` too.

The clip bounds may also come per token as ``clip_low_threshold`` / ``clip_high_threshold`` loss
inputs, which then take precedence over the config.

``loss_fn_config`` values may be text since protocol 0.38; no loss here has a text setting, so a text
value is refused with a message naming it. ``stable_reinforce`` is refused (see ``UNSERVED_LOSSES``).
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
    "gspo": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2},
}
LOSS_FUNCTIONS = tuple(LOSS_CONFIG_DEFAULTS)

UNSERVED_LOSSES: dict[str, str] = {
    "stable_reinforce": (
        "the local service does not implement stable_reinforce: its objective is not published, and it reads "
        "stability information that the Tinker service's sampler records (record_stability_info) for the sequences "
        "a datum's provenance spans name, which is not published either, so it cannot be computed faithfully here; "
        "train with stable_reinforce on the Tinker service, or use gspo, ppo or cispo locally"
    ),
}
"""Losses of protocol 0.38 that the local model refuses, and why (not faked with another objective)."""

_CLIPPED = ("ppo", "cispo", "gspo")
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens",),
    "gspo": ("target_tokens", "logprobs", "advantages", "sequence_ratio_mask"),
    **{name: ("target_tokens", "logprobs", "advantages") for name in LOSS_FUNCTIONS
       if name not in ("cross_entropy", "gspo")},
}
OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {
    name: ("weights", "clip_low_threshold", "clip_high_threshold") if name in _CLIPPED else ("weights",)
    for name in LOSS_FUNCTIONS
}
TWO_D_INPUTS: dict[str, tuple[str, ...]] = {"cross_entropy": ("target_tokens", "weights")}
"""Inputs that may be ``[N, K]`` instead of ``[N]`` (K targets per position), per loss."""


def check_served(loss_fn: str) -> None:
    """An :class:`InvalidModelInput` naming the losses served unless the local model computes `loss_fn`."""
    reason = UNSERVED_LOSSES.get(loss_fn)
    if reason is not None:
        raise InvalidModelInput(reason)
    if loss_fn not in LOSS_CONFIG_DEFAULTS:
        raise InvalidModelInput(f"unknown loss_fn {loss_fn!r}; expected one of {', '.join(LOSS_FUNCTIONS)}")


def resolve_loss_config(loss_fn: str, config: Mapping[str, float | str] | None) -> dict[str, float]:
    """The config of `loss_fn` with defaults filled in; unknown losses or keys, and text or non-finite
    values, are user errors."""
    check_served(loss_fn)
    resolved = dict(LOSS_CONFIG_DEFAULTS[loss_fn])
    for key, value in (config or {}).items():
        if key not in resolved:
            allowed = ", ".join(resolved) or "none"
            raise InvalidModelInput(f"loss_fn_config key {key!r} is not used by {loss_fn} (allowed: {allowed})")
        if isinstance(value, str):
            raise InvalidModelInput(f"loss_fn_config[{key!r}] must be a number, got the text {value!r} "
                                    f"({loss_fn} has no text settings)")
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
    """Per-token loss terms of one datum and d(total loss)/d(logp) for each token (the shape of ``logp``:
    ``[N]``, or ``[N, K]`` for 2-D targets)."""

    elementwise: Array
    d_logprobs: Array
    clipped: Array | None  # bool per token, for the clip statistics of ppo, cispo and gspo


def token_loss(loss_fn: str, logp: Array, inputs: Mapping[str, Array], config: Mapping[str, float]) -> TokenLoss:
    """Evaluates `loss_fn` on one datum's target log-probabilities ``logp`` (validated inputs): ``[N]``, or
    ``[N, K]`` with 2-D targets (``TWO_D_INPUTS``)."""
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
        ratio = _sequence_ratio(logp, q, inputs["sequence_ratio_mask"]) if loss_fn == "gspo" else np.exp(logp - q)
    if loss_fn == "importance_sampling":
        return TokenLoss(elementwise=-w * ratio * adv, d_logprobs=-w * ratio * adv, clipped=None)

    low = inputs.get("clip_low_threshold", np.asarray(config["clip_low_threshold"]))
    high = inputs.get("clip_high_threshold", np.asarray(config["clip_high_threshold"]))
    clipped_ratio = np.clip(ratio, low.astype(logp.dtype), high.astype(logp.dtype))
    if loss_fn in ("ppo", "gspo"):  # gspo: ppo's objective on the sequence ratio (its gradient: see above)
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


def _sequence_ratio(logp: Array, q: Array, mask: Array) -> Array:
    """GSPO's ratio ``exp(mean over the marked tokens of (logp - q))``, one value repeated per token."""
    marked = mask != 0
    if not np.any(marked):
        raise InvalidModelInput("gspo: sequence_ratio_mask marks no token (its sequence ratio is a mean over "
                                "the marked tokens: mark the sampled tokens with 1)")
    log_ratio = np.mean((logp - q)[marked])
    return np.full_like(logp, np.exp(log_ratio))
