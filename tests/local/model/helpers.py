"""Shared helpers for the tiny model's tests (imported relatively: `from .helpers import ...`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model import CORPUS_PATH, DatumArrays, LoraTrainer, load_tokenizer


def randomize_lora(trainer: LoraTrainer, seed: int, b_std: float = 0.02) -> dict[str, np.ndarray]:
    """Gives every adapter factor random values (B too: with B = 0 the gradient of A is exactly 0)."""
    rng = np.random.default_rng(seed)
    state = trainer.state(with_optimizer=False)
    for key in list(state):
        if key.startswith("lora."):
            std = b_std if key.endswith(".b") else 1.0 / np.sqrt(state[key].shape[0])
            state[key] = std * rng.standard_normal(state[key].shape)
    trainer.load_state(state, with_optimizer=False)
    return state


def corpus_ids(base: str) -> npt.NDArray[np.int64]:
    return np.asarray(load_tokenizer(base).encode(CORPUS_PATH.read_text(encoding="utf-8")).ids, dtype=np.int64)


def corpus_batch(ids: npt.NDArray[np.int64], rng: np.random.Generator, size: int, length: int) -> list[DatumArrays]:
    starts = rng.integers(0, len(ids) - length - 1, size)
    return [DatumArrays.next_token(ids[s : s + length + 1]) for s in starts]


def random_datum(
    rng: np.random.Generator, vocab: int, length: int, **extra: npt.NDArray[np.float64]
) -> DatumArrays:
    tokens = rng.integers(0, vocab, length + 1)
    return DatumArrays(tokens=tokens[:-1], loss_inputs={"target_tokens": tokens[1:], **extra})
