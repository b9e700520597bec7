"""The client-side half of forward_backward_custom: gradients, composition, norms and the linear datums."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

import tinker_actors as tinker
from tests.training.support import assert_grads_close, batch, finite_difference
from tinker_actors.training.custom_loss import CustomLossError, compute_custom_loss, evaluate_term, linear_datums
from tinker_actors.training.regularizers import L1, L2, Consistency, KLPenalty, Logprobs, Regularizer, TermValue

pytest.importorskip("torch")
import torch


@dataclass(frozen=True)
class MeanSquaredNumpy:
    """Σ_i mean_k(lp_ik²): a numpy loss object with its hand-written gradient."""

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        value = sum(float(np.mean(lp * lp)) for lp in logprobs)
        return TermValue(value, [2.0 * lp / lp.size for lp in logprobs], {"mean_sq": value})


def mean_squared_torch(data: list[tinker.Datum], logprobs: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    loss = torch.stack([(lp * lp).mean() for lp in logprobs]).sum()
    return loss, {"mean_sq": loss.item()}


def test_numpy_loss_gradient_matches_finite_differences() -> None:
    data, logprobs = batch(np.random.default_rng(0), [4, 6])
    result = evaluate_term(MeanSquaredNumpy(), data, logprobs)
    numeric = finite_difference(lambda lps: MeanSquaredNumpy().value_and_grad(data, lps).value, logprobs)
    assert_grads_close(result.grads, numeric)


def test_torch_loss_gradient_matches_finite_differences() -> None:
    data, logprobs = batch(np.random.default_rng(1), [4, 6])

    def ppo_like(data: list[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.stack([-(torch.exp(lp) * (i + 1.0)).sum() + torch.logsumexp(lp, 0)
                            for i, lp in enumerate(lps)]).sum(), {}

    def value(lps: Logprobs) -> float:
        return float(ppo_like(data, [torch.tensor(lp, dtype=torch.float64) for lp in lps])[0])

    result = evaluate_term(ppo_like, data, logprobs)
    assert_grads_close(result.grads, finite_difference(value, logprobs), rtol=1e-4, atol=1e-5)


def test_torch_and_numpy_paths_agree() -> None:
    data, logprobs = batch(np.random.default_rng(2), [3, 8, 5])
    regs = [Regularizer("l2", L2(), 0.1), Regularizer("l1", L1(), 0.2)]
    via_numpy = compute_custom_loss(data, logprobs, MeanSquaredNumpy(), regs)
    via_torch = compute_custom_loss(data, logprobs, mean_squared_torch, regs)
    assert via_torch.loss == pytest.approx(via_numpy.loss, rel=1e-6)
    assert via_torch.metrics["mean_sq"] == pytest.approx(via_numpy.metrics["mean_sq"], rel=1e-6)
    assert_grads_close(via_torch.grads, via_numpy.grads, rtol=1e-5, atol=1e-6)
    assert via_torch.norms.total == pytest.approx(via_numpy.norms.total, rel=1e-5)


def test_composed_gradient_matches_finite_differences_of_the_total_loss() -> None:
    rng = np.random.default_rng(3)
    data, logprobs = batch(rng, [5, 5, 3])
    regs = [Regularizer("l2", L2(center=-1.0), 0.3), Regularizer("kl", KLPenalty([lp + 0.2 for lp in logprobs]), 2.0),
            Regularizer("consistency", Consistency([(0, 1)]), 0.5)]
    result = compute_custom_loss(data, logprobs, MeanSquaredNumpy(), regs)
    numeric = finite_difference(lambda lps: compute_custom_loss(data, lps, MeanSquaredNumpy(), regs).loss, logprobs)
    assert_grads_close(result.grads, numeric)
    assert result.loss == pytest.approx(result.base_loss + sum(t.weight * t.value.value for t in result.terms))


def test_grad_norms_match_a_direct_computation() -> None:
    data, logprobs = batch(np.random.default_rng(4), [4, 7])
    regs = [Regularizer("l2", L2(), 0.5), Regularizer("l1", L1(), 3.0)]
    result = compute_custom_loss(data, logprobs, MeanSquaredNumpy(), regs, model_id="m")
    flat = np.concatenate
    base = flat(MeanSquaredNumpy().value_and_grad(data, logprobs).grads)
    l2 = flat(L2().value_and_grad(data, logprobs).grads)
    l1 = flat(L1().value_and_grad(data, logprobs).grads)
    assert result.norms.model_id == "m"
    assert result.norms.base == pytest.approx(np.linalg.norm(base))
    assert [t.name for t in result.norms.terms] == ["l2", "l1"]
    expected = [(np.linalg.norm(l2), 0.5), (np.linalg.norm(l1), 3.0)]
    for term, (norm, weight) in zip(result.norms.terms, expected, strict=True):
        assert term.raw == pytest.approx(norm) and term.weighted == pytest.approx(weight * norm)
    # The total is the norm of the composed gradient (terms cancel), not a sum of norms.
    assert result.norms.total == pytest.approx(np.linalg.norm(base + 0.5 * l2 + 3.0 * l1))
    assert result.norms.total < result.norms.base + sum(t.weighted for t in result.norms.terms)
    assert result.metrics["grad_norm/total"] == result.norms.total


def test_linear_datums_carry_targets_and_negated_gradient() -> None:
    data, _ = batch(np.random.default_rng(5), [3, 2])
    grads = [np.array([1.0, -2.0, 0.5]), np.array([0.0, 4.0])]
    linear = linear_datums(data, grads)
    for original, datum, grad in zip(data, linear, grads, strict=True):
        assert set(datum.loss_fn_inputs) == {"target_tokens", "weights"}
        assert datum.loss_fn_inputs["target_tokens"].tolist() == original.loss_fn_inputs["target_tokens"].tolist()
        assert datum.loss_fn_inputs["weights"].tolist() == (-grad).tolist()
        assert datum.model_input == original.model_input


def test_malformed_losses_are_typed_errors() -> None:
    data, logprobs = batch(np.random.default_rng(6), [3])

    def constant(data: list[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.tensor(1.0), {}

    def not_finite(data: list[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return (lps[0] * math.inf).sum(), {}

    def raises(data: list[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise KeyError("oops")

    with pytest.raises(CustomLossError, match="does not depend"):
        compute_custom_loss(data, logprobs, constant)
    with pytest.raises(CustomLossError, match="not finite"):
        compute_custom_loss(data, logprobs, not_finite)
    with pytest.raises(CustomLossError, match="oops"):
        compute_custom_loss(data, logprobs, raises)


def test_unused_datum_gets_zero_gradient_and_vector_losses_are_summed() -> None:
    data, logprobs = batch(np.random.default_rng(7), [3, 2])

    def first_only(data: list[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return -lps[0], {}  # a vector: summed

    result = compute_custom_loss(data, logprobs, first_only)
    assert result.loss == pytest.approx(-float(logprobs[0].sum()), rel=1e-6)
    np.testing.assert_allclose(result.grads[0], -1.0)
    np.testing.assert_array_equal(result.grads[1], 0.0)
