"""The bundled model learns the shipped corpus: cross-entropy falls clearly within 30 steps.

How long the steps take is measured by bench/bench_local_model.py, not asserted here."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.local.model import LoraTrainer

from .helpers import corpus_batch, corpus_ids

STEPS = 30
LEARNING_RATE = 5e-3


@pytest.mark.parametrize(("base", "length", "min_drop"), [("tiny-byte", 64, 2.0), ("tiny-bpe", 64, 1.4)])
def test_cross_entropy_falls_on_the_corpus(base: str, length: int, min_drop: float) -> None:
    ids = corpus_ids(base)
    held_out = corpus_batch(ids, np.random.default_rng(1000), 16, length)
    tokens = 16 * length
    trainer = LoraTrainer(base, rank=16, seed=0)
    rng = np.random.default_rng(0)

    before = trainer.forward(held_out, "cross_entropy").metrics["loss:sum"] / tokens
    for _ in range(STEPS):
        trainer.forward_backward(corpus_batch(ids, rng, 8, length), "cross_entropy")
        trainer.optim_step(lr=LEARNING_RATE)
    after = trainer.forward(held_out, "cross_entropy").metrics["loss:sum"] / tokens

    assert before - after > min_drop, f"{base}: cross-entropy {before:.3f} -> {after:.3f} nats/token"

