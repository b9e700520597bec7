"""Adam with decoupled weight decay and global-norm gradient clipping, on a dict of arrays.

One step, with ``t`` the 1-based step count and ``g`` the (clipped) gradient::

    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g**2
    p = p - lr * (m / (1 - beta1**t) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * p)

Clipping: when ``grad_clip_norm > 0`` and the global L2 norm of all gradients exceeds it, every
gradient is scaled by ``grad_clip_norm / norm`` first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model.errors import InvalidModelInput

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class AdamHyperparams:
    """Defaults are the Tinker 0.6.3 ``AdamParams`` defaults."""

    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    def validate(self) -> None:
        checks = {
            "learning_rate must be >= 0": self.lr >= 0,
            "beta1 must be in [0, 1)": 0 <= self.beta1 < 1,
            "beta2 must be in [0, 1)": 0 <= self.beta2 < 1,
            "eps must be >= 0": self.eps >= 0,
            "weight_decay must be >= 0": self.weight_decay >= 0,
            "grad_clip_norm must be >= 0": self.grad_clip_norm >= 0,
        }
        values = (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.grad_clip_norm)
        if not all(math.isfinite(float(value)) for value in values):
            raise InvalidModelInput("Adam parameters must be finite numbers")
        for message, ok in checks.items():
            if not ok:
                raise InvalidModelInput(f"Adam: {message}")


@dataclass(eq=False)
class AdamState:
    """First and second moments per parameter, and the number of steps taken."""

    step: int = 0
    first: dict[str, Array] = field(default_factory=dict)
    second: dict[str, Array] = field(default_factory=dict)


def global_norm(arrays: Mapping[str, Array]) -> float:
    return math.sqrt(sum(float(np.vdot(a, a)) for a in arrays.values()))


def adam_step(
    params: Mapping[str, Array], grads: Mapping[str, Array], state: AdamState, hp: AdamHyperparams
) -> dict[str, float]:
    """Updates `params` (in place) and `state`; returns metrics of the step."""
    hp.validate()
    grad_norm = global_norm(grads)
    clip_factor = 1.0
    if hp.grad_clip_norm > 0 and grad_norm > hp.grad_clip_norm:
        clip_factor = hp.grad_clip_norm / grad_norm
    state.step += 1
    first_correction = 1.0 - hp.beta1**state.step
    second_correction = 1.0 - hp.beta2**state.step
    update_sq = 0.0
    for key, param in params.items():
        grad = grads[key] * clip_factor if clip_factor != 1.0 else grads[key]
        m = state.first.setdefault(key, np.zeros_like(param))
        v = state.second.setdefault(key, np.zeros_like(param))
        m *= hp.beta1
        m += (1.0 - hp.beta1) * grad
        v *= hp.beta2
        v += (1.0 - hp.beta2) * grad * grad
        update = hp.lr * ((m / first_correction) / (np.sqrt(v / second_correction) + hp.eps) + hp.weight_decay * param)
        param -= update
        update_sq += float(np.vdot(update, update))
    return {
        "grad_norm:mean": grad_norm,
        "update_norm:mean": math.sqrt(update_sq),
        "param_norm:mean": global_norm(params),
        "learning_rate:mean": hp.lr,
    }
