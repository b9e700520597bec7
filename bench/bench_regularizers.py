"""Benchmark: regularizers run in parallel (daemon worker threads) versus sequentially (a script, not a test).

    .venv/bin/python bench/bench_regularizers.py [--quick]

For three workloads it prints the median wall time of one ``run_regularizers`` call in both modes and
their ratio: cheap built-ins on a small batch (pure overhead), the same built-ins on a large batch
(numpy array work, which releases the GIL only partly), and terms that wait (I/O-bound, e.g. a term
that asks a service for reference logprobs). It also prints the whole client-side step
(``compute_custom_loss``: base loss + regularizers + composition + norms) for the small batch.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

import tinker_actors as tinker
from tinker_actors.training.custom_loss import compute_custom_loss, evaluate_term
from tinker_actors.training.regularizers import (
    L1,
    L2,
    Consistency,
    KLPenalty,
    Logprobs,
    Regularizer,
    TermValue,
    run_regularizers,
)


def make_batch(datums: int, tokens: int, rng: np.random.Generator) -> tuple[list[tinker.Datum], Logprobs]:
    data = [tinker.Datum(model_input=tinker.ModelInput.from_ints([1] * tokens),
                         loss_fn_inputs={"target_tokens": [2] * tokens, "weights": [1.0] * tokens})
            for _ in range(datums)]
    return data, [-rng.uniform(0.1, 4.0, tokens) for _ in range(datums)]


class Waiting:
    """A term that waits ``seconds`` (stands for I/O: fetching a reference from a service)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        time.sleep(self.seconds)
        return TermValue(0.0, [np.zeros_like(lp) for lp in logprobs])


class NegMean:
    def value_and_grad(self, data: Sequence[tinker.Datum], logprobs: Logprobs) -> TermValue:
        count = sum(lp.size for lp in logprobs)
        return TermValue(-sum(float(lp.sum()) for lp in logprobs) / count,
                         [np.full_like(lp, -1.0 / count) for lp in logprobs])


def builtins(logprobs: Logprobs) -> list[Regularizer]:
    reference = [lp + 0.1 for lp in logprobs]
    return [Regularizer("l1", L1(), 0.1), Regularizer("l2", L2(center=-1.0), 0.1),
            Regularizer("kl", KLPenalty(reference), 0.5),
            Regularizer("consistency", Consistency([(i, i + 1) for i in range(len(logprobs) - 1)]), 0.2)]


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm up (starts the worker threads)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def compare(label: str, regs: list[Regularizer], data: list[tinker.Datum], logprobs: Logprobs, repeats: int) -> None:
    par = median_seconds(lambda: run_regularizers(regs, data, logprobs, evaluate_term, parallel=True), repeats)
    seq = median_seconds(lambda: run_regularizers(regs, data, logprobs, evaluate_term, parallel=False), repeats)
    print(f"{label:<44} {seq * 1e3:>10.3f} {par * 1e3:>10.3f} {par / seq:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 20 if args.quick else 200
    rng = np.random.default_rng(0)
    small = make_batch(8, 64, rng)
    large = make_batch(64, 4096, rng)

    print(f"{'workload (4 terms)':<44} {'seq ms':>10} {'par ms':>10} {'par/seq':>9}")
    compare("built-ins, 8 datums x 64 tokens", builtins(small[1]), *small, repeats)
    compare("built-ins, 64 datums x 4096 tokens", builtins(large[1]), *large, max(repeats // 10, 5))
    waiting = [Regularizer(f"wait{i}", Waiting(0.005)) for i in range(4)]
    compare("waiting terms (4 x 5 ms)", waiting, *small, max(repeats // 10, 5))

    for parallel in (False, True):
        step = median_seconds(functools.partial(compute_custom_loss, *small, NegMean(), builtins(small[1]),
                                                parallel=parallel), repeats)
        mode = "parallel" if parallel else "sequential"
        print(f"whole client-side step, small batch, {mode:<10} {step * 1e3:>8.3f} ms")


if __name__ == "__main__":
    main()
