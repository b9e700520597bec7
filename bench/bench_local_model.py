"""Throughput of the local service's tiny numpy model on this machine.

For each base model: forward_backward and forward tokens/s on a batch of 8 x 128 tokens (rank 32, all
LoRA targets), against a baseline in the same run: only the matrix multiplications of the same shapes
(plain numpy, no softmax, norms, GELU, loss or LoRA), so the gap is the cost of everything else.
Also reports sampling speed (4 samples x 64 new tokens with a KV cache).

Usage: ``python bench/bench_local_model.py [--batch 8] [--seq 128] [--repeats 20]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model import BASE_MODELS, BaseModelInfo, DatumArrays, LoraTrainer, Sampler

Array = npt.NDArray[Any]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` timed runs after warm-up: the least disturbed by other load on the machine
    (and the first touches of fresh memory, slow in a VM, are not counted)."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


class MatmulBaseline:
    """The model's matrix multiplications alone, with the same shapes, in float32."""

    def __init__(self, info: BaseModelInfo, batch: int, seq: int) -> None:
        rng = np.random.default_rng(0)
        d, f, v, h = info.d_model, info.d_mlp, info.vocab_size, info.n_heads
        self.rows, self.batch, self.seq, self.heads, self.layers = batch * seq, batch, seq, h, info.n_layers
        self.x = rng.standard_normal((self.rows, d)).astype(np.float32)
        self.square = rng.standard_normal((d, d)).astype(np.float32)
        self.w_in = rng.standard_normal((d, f)).astype(np.float32)
        self.w_out = rng.standard_normal((f, d)).astype(np.float32)
        self.unembed = rng.standard_normal((d, v)).astype(np.float32)
        self.heads_x = rng.standard_normal((batch, h, seq, d // h)).astype(np.float32)
        self.scores = rng.standard_normal((batch, h, seq, seq)).astype(np.float32)
        self.hidden = rng.standard_normal((self.rows, f)).astype(np.float32)
        self.logits = rng.standard_normal((self.rows, v)).astype(np.float32)

    def forward(self) -> None:
        for _ in range(self.layers):
            for _ in range(4):  # q, k, v, o
                self.x @ self.square
            self.heads_x @ self.heads_x.transpose(0, 1, 3, 2)  # scores
            self.scores @ self.heads_x  # weighted values
            self.x @ self.w_in
            self.hidden @ self.w_out
        self.x @ self.unembed

    def forward_backward(self) -> None:
        self.forward()
        self.logits @ self.unembed.T
        for _ in range(self.layers):
            self.x @ self.w_out.T
            self.hidden @ self.w_in.T
            for _ in range(4):
                self.x @ self.square.T
            for _ in range(2):  # d_probs, d_v
                self.scores @ self.heads_x
            for _ in range(2):  # d_q, d_k
                self.scores @ self.heads_x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tokens = args.batch * args.seq

    print(f"local tiny model, numpy {np.__version__}, {os.cpu_count()} cores, {platform.machine()}")
    print(f"batch {args.batch} x {args.seq} = {tokens} tokens, LoRA rank 32 on all targets, float32\n")
    header = f"{'model':10} {'op':18} {'ms':>8} {'tokens/s':>11} {'matmul-only ms':>15} {'overhead':>9}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for name, info in BASE_MODELS.items():
        trainer = LoraTrainer(name, rank=32)
        batch = [DatumArrays.next_token(rng.integers(0, info.vocab_size, args.seq + 1)) for _ in range(args.batch)]
        baseline = MatmulBaseline(info, args.batch, args.seq)

        def fwd_bwd(trainer: LoraTrainer = trainer, batch: list[DatumArrays] = batch) -> None:
            trainer.forward_backward(batch, "cross_entropy")
            trainer.optim_step(lr=0.0)  # drop the accumulated gradients, weights unchanged

        def fwd(trainer: LoraTrainer = trainer, batch: list[DatumArrays] = batch) -> None:
            trainer.forward(batch, "cross_entropy")

        for op, run, base_run in (
            ("forward_backward", fwd_bwd, baseline.forward_backward),
            ("forward", fwd, baseline.forward),
        ):
            seconds = best_seconds(run, args.repeats)
            base_seconds = best_seconds(base_run, args.repeats)
            print(
                f"{name:10} {op:18} {seconds * 1e3:8.1f} {tokens / seconds:11,.0f} "
                f"{base_seconds * 1e3:15.1f} {seconds / base_seconds:8.1f}x"
            )

        sampler = Sampler.from_trainer(trainer)
        prompt = rng.integers(0, info.vocab_size, 32).tolist()

        def sample(sampler: Sampler = sampler, prompt: list[int] = prompt) -> None:
            sampler.sample(prompt, num_samples=4, max_tokens=64, seed=0)

        seconds = best_seconds(sample, 5)
        print(f"{name:10} {'sample 4x64':18} {seconds * 1e3:8.1f} {4 * 64 / seconds:11,.0f}")
    print("\noverhead = model time / time of its matrix multiplications alone (same shapes, same run)")


if __name__ == "__main__":
    main()
