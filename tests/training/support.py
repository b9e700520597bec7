"""Shared helpers: random batches of target-token logprobs and a central finite-difference gradient."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import tinker_actors as tinker
from tinker_actors.training.regularizers import Logprobs


def batch(rng: np.random.Generator, lengths: list[int], *, masked: bool = True) -> tuple[list[tinker.Datum], Logprobs]:
    """Datums with targets and (partly zero) weights, and strictly negative logprobs for them."""
    data, logprobs = [], []
    for length in lengths:
        tokens = [int(t) for t in rng.integers(0, 200, length + 1)]
        weights = [0.0 if masked and k < 2 else float(rng.uniform(0.5, 1.5)) for k in range(length)]
        data.append(tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                                 loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights}))
        logprobs.append(-rng.uniform(0.1, 4.0, length))
    return data, logprobs


def finite_difference(value: Callable[[Logprobs], float], logprobs: Logprobs, eps: float = 1e-6) -> Logprobs:
    grads = []
    for i, lp in enumerate(logprobs):
        grad = np.zeros_like(lp)
        for k in range(lp.size):
            up = [x.copy() for x in logprobs]
            down = [x.copy() for x in logprobs]
            up[i][k] += eps
            down[i][k] -= eps
            grad[k] = (value(up) - value(down)) / (2 * eps)
        grads.append(grad)
    return grads


def assert_grads_close(actual: Logprobs, expected: Logprobs, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
