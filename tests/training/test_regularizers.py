"""Built-in regularizers have exact gradients; the executor runs terms in parallel or in order, with
timeouts and typed errors that name the failing term."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

import tinker_actors as tinker
from tests.training.support import assert_grads_close, batch, finite_difference
from tinker_actors.errors import InvalidInputError
from tinker_actors.training.custom_loss import evaluate_term
from tinker_actors.training.regularizers import (
    L1,
    L2,
    Consistency,
    KLPenalty,
    Logprobs,
    Regularizer,
    RegularizerError,
    RegularizerTimeoutError,
    Term,
    TermValue,
    run_regularizers,
)


def builtins(rng: np.random.Generator, logprobs: Logprobs) -> list[Term]:
    reference = [lp + rng.normal(0, 0.5, lp.size) for lp in logprobs]
    return [L1(), L1(use_weights=False), L2(), L2(center=-1.0), KLPenalty(reference, "k1"),
            KLPenalty(reference, "k2"), KLPenalty(reference, "k3"), KLPenalty(reference, use_weights=False),
            Consistency([(0, 1), (1, 2), (0, 2)]), Consistency([(2, 0)], use_weights=False)]


@pytest.mark.parametrize("index", range(10))
def test_builtin_gradient_matches_finite_differences(index: int) -> None:
    rng = np.random.default_rng(index)
    data, logprobs = batch(rng, [5, 3, 7])
    term = builtins(rng, logprobs)[index]
    result = term.value_and_grad(data, logprobs)
    numeric = finite_difference(lambda lps: term.value_and_grad(data, lps).value, logprobs)
    assert_grads_close(result.grads, numeric, rtol=1e-5, atol=1e-6)
    assert any(np.any(g != 0) for g in result.grads)  # every built-in contributes a gradient


def test_builtin_values_match_their_formulas() -> None:
    rng = np.random.default_rng(1)
    data, logprobs = batch(rng, [4, 4])
    weights = [d.loss_fn_inputs["weights"].to_numpy() for d in data]
    assert L1().value_and_grad(data, logprobs).value == pytest.approx(
        sum(float(np.sum(w * np.abs(lp))) for w, lp in zip(weights, logprobs, strict=True)))
    assert L2(center=-1.0, use_weights=False).value_and_grad(data, logprobs).value == pytest.approx(
        sum(float(np.sum((lp + 1.0) ** 2)) for lp in logprobs))
    same = KLPenalty([lp.copy() for lp in logprobs]).value_and_grad(data, logprobs)
    assert same.value == pytest.approx(0.0) and all(np.allclose(g, 0.0) for g in same.grads)
    shifted = KLPenalty([lp - 0.3 for lp in logprobs], "k3", use_weights=False).value_and_grad(data, logprobs)
    assert shifted.value == pytest.approx(8 * (np.exp(-0.3) - 1 + 0.3))
    means = [float(np.sum(w * lp) / np.sum(w)) for w, lp in zip(weights, logprobs, strict=True)]
    assert Consistency([(0, 1)]).value_and_grad(data, logprobs).value == pytest.approx((means[0] - means[1]) ** 2)


def test_builtins_reject_bad_shapes() -> None:
    data, logprobs = batch(np.random.default_rng(2), [3, 3])
    with pytest.raises(InvalidInputError):
        KLPenalty([logprobs[0]]).value_and_grad(data, logprobs)
    with pytest.raises(InvalidInputError):
        Consistency([(0, 5)]).value_and_grad(data, logprobs)
    with pytest.raises(InvalidInputError):
        Regularizer("neg", L1(), weight=-1.0)
    with pytest.raises(InvalidInputError):
        Regularizer("", L1())


class Slow:
    def __init__(self, seconds: float, factor: float = 1.0) -> None:
        self.seconds, self.factor = seconds, factor
        self.threads: list[str] = []

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        return TermValue(self.factor * sum(float(lp.sum()) for lp in logprobs),
                         [np.full_like(lp, self.factor) for lp in logprobs])


class Broken:
    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        raise ZeroDivisionError("boom")


class WrongShape:
    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        return TermValue(1.0, [np.zeros(1) for _ in logprobs])


def test_parallel_and_sequential_give_the_same_results() -> None:
    rng = np.random.default_rng(3)
    data, logprobs = batch(rng, [6, 2, 9])
    regs = [Regularizer(f"r{i}", term, weight=0.1 * (i + 1)) for i, term in enumerate(builtins(rng, logprobs))]
    parallel = run_regularizers(regs, data, logprobs, evaluate_term, parallel=True)
    sequential = run_regularizers(regs, data, logprobs, evaluate_term, parallel=False)
    assert [r.name for r in parallel] == [r.name for r in sequential] == [r.name for r in regs]
    for p, s in zip(parallel, sequential, strict=True):
        assert p.value.value == s.value.value and p.weight == s.weight
        for gp, gs in zip(p.value.grads, s.value.grads, strict=True):
            np.testing.assert_array_equal(gp, gs)


def test_parallel_runs_terms_concurrently_on_worker_threads() -> None:
    data, logprobs = batch(np.random.default_rng(4), [3])
    terms = [Slow(0.2) for _ in range(4)]
    started = time.perf_counter()
    run_regularizers([Regularizer(f"s{i}", t) for i, t in enumerate(terms)], data, logprobs, evaluate_term)
    assert time.perf_counter() - started < 0.6  # four 0.2 s terms, overlapped
    assert all(t.threads[0].startswith("regularizer-") for t in terms)

    sequential = [Slow(0.0) for _ in range(2)]
    run_regularizers([Regularizer(f"q{i}", t) for i, t in enumerate(sequential)], data, logprobs, evaluate_term,
                     parallel=False)
    assert [t.threads[0] for t in sequential] == [threading.current_thread().name] * 2


@pytest.mark.parametrize("parallel", [True, False])
def test_a_failing_term_is_a_typed_error_naming_it(parallel: bool) -> None:
    data, logprobs = batch(np.random.default_rng(5), [3])
    regs = [Regularizer("fine", L2()), Regularizer("broken", Broken()), Regularizer("shape", WrongShape())]
    with pytest.raises(RegularizerError) as caught:
        run_regularizers(regs, data, logprobs, evaluate_term, parallel=parallel)
    assert caught.value.name == "broken" and "broken" in str(caught.value)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    with pytest.raises(RegularizerError) as caught:
        run_regularizers(regs[2:] + regs[:1], data, logprobs, evaluate_term, parallel=parallel)
    assert caught.value.name == "shape" and "1 entries" in str(caught.value)


@pytest.mark.parametrize("parallel", [True, False])
def test_a_slow_term_times_out_with_its_name(parallel: bool) -> None:
    data, logprobs = batch(np.random.default_rng(6), [3])
    regs = [Regularizer("quick", L1()), Regularizer("sleepy", Slow(0.5), timeout=0.1)]
    started = time.perf_counter()
    with pytest.raises(RegularizerTimeoutError) as caught:
        run_regularizers(regs, data, logprobs, evaluate_term, parallel=parallel)
    assert caught.value.name == "sleepy" and isinstance(caught.value, TimeoutError)
    if parallel:
        assert time.perf_counter() - started < 0.4  # did not wait for the sleeper


def test_duplicate_names_are_rejected() -> None:
    data, logprobs = batch(np.random.default_rng(7), [3])
    with pytest.raises(InvalidInputError, match="duplicate"):
        run_regularizers([Regularizer("a", L1()), Regularizer("a", L2())], data, logprobs, evaluate_term)


def test_torch_callable_regularizer_matches_the_numpy_builtin() -> None:
    pytest.importorskip("torch")
    import torch
    data, logprobs = batch(np.random.default_rng(8), [5, 4], masked=False)

    def l2_torch(data: Sequence[tinker.Datum], lps: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return torch.stack([(lp * lp).sum() for lp in lps]).sum(), {}

    torch_result = run_regularizers([Regularizer("t", l2_torch)], data, logprobs, evaluate_term)[0]
    numpy_result = run_regularizers([Regularizer("n", L2(use_weights=False))], data, logprobs, evaluate_term)[0]
    assert torch_result.value.value == pytest.approx(numpy_result.value.value, rel=1e-5)
    assert_grads_close(torch_result.value.grads, numpy_result.value.grads, rtol=1e-5, atol=1e-5)
