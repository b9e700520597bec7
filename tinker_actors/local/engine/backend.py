"""The seam between the service and the model that does the work.

The service speaks HTTP and futures; a :class:`Backend` does the math. Two implementations exist:
:class:`tinker_actors.local.engine.numpy_backend.NumpyBackend` (the tiny numpy LM, real training) and
:class:`ZeroWorkBackend` (instant canned answers of the right shapes, to measure a client's own
overhead). Backend calls are blocking; the service runs them on worker threads unless the backend
says it is ``instant``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "AdamSettings",
    "Arrays",
    "Backend",
    "BaseModelDescription",
    "DatumInput",
    "GeneratedSequence",
    "LoraSpec",
    "SampleArgs",
    "SampleOutput",
    "SamplerEngine",
    "StepOutput",
    "TopkArrays",
    "Trainer",
    "ZeroWorkBackend",
]

Arrays = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class BaseModelDescription:
    """A base model as the service sees it; ``vocab_size`` and ``context_window`` bound the token ids
    and lengths a request may carry (checked before any work is queued)."""

    name: str
    arch: str
    tokenizer_id: str
    vocab_size: int
    context_window: int


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    seed: int | None
    train_mlp: bool
    train_attn: bool
    train_unembed: bool


@dataclass(frozen=True)
class DatumInput:
    """One datum as arrays: the input tokens and the loss inputs (each already reshaped)."""

    tokens: npt.NDArray[np.int64]
    loss_fn_inputs: Arrays


@dataclass(frozen=True)
class StepOutput:
    outputs: list[Arrays]
    metrics: dict[str, float]


@dataclass(frozen=True)
class AdamSettings:
    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0


@dataclass(frozen=True)
class SampleArgs:
    """One sample request. ``stop`` None: end-of-text only; ``[]``: nothing stops before ``max_tokens``."""

    prompt: list[int]
    num_samples: int
    max_tokens: int | None
    temperature: float
    top_k: int
    top_p: float
    stop: list[str] | list[int] | None
    seed: int | None
    prompt_logprobs: bool
    topk_prompt_logprobs: int
    prompt_logprobs_last_n: int | None = None
    topk_sample_logprobs: int = 0
    # Token ids to score in the prompt: target_token_ids[j] at prompt position target_rows[j] + 1.
    target_rows: npt.NDArray[np.int64] | None = None
    target_token_ids: npt.NDArray[np.int64] | None = None
    prompt_alt_tokens_k: int = 0


TopkArrays = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]
"""``(token_ids, logprobs)``, each ``[positions, k]``."""


@dataclass(frozen=True)
class GeneratedSequence:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["length", "stop"]
    topk: TopkArrays | None = None


@dataclass(frozen=True)
class SampleOutput:
    sequences: list[GeneratedSequence]
    prompt_logprobs: list[float | None] | None = None
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
    target_logprobs: npt.NDArray[np.float32] | None = None
    """One per ``SampleArgs`` target pair."""
    alt_tokens: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None = None
    """``(tokens, logprobs)``, each ``[len(prompt) - 1, prompt_alt_tokens_k]``."""
    prompt_cache_hit_tokens: int = 0


class SamplerEngine(Protocol):
    def sample(self, args: SampleArgs) -> SampleOutput: ...


class Trainer(Protocol):
    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput: ...

    def optim_step(self, adam: AdamSettings) -> dict[str, float]: ...

    def state(self, *, with_optimizer: bool) -> Arrays: ...

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None: ...

    def sampler(self) -> SamplerEngine:
        """A sampler over a snapshot of the current weights."""
        ...


class Backend(Protocol):
    """Model factory. ``instant`` backends are called on the service loop (no worker thread)."""

    instant: bool

    def base_models(self) -> list[BaseModelDescription]: ...

    def describe(self, base_model: str) -> BaseModelDescription:
        """The named base model (aliases allowed); ``ValueError`` if unknown."""
        ...

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer: ...

    def new_sampler(self, base_model: str, lora_arrays: Arrays | None) -> SamplerEngine: ...


# ---- zero-work ---------------------------------------------------------------------------------

_ZERO_WORK_MODELS = (
    BaseModelDescription("tiny-byte", "zero-work (no model)", "tinker-actors/tiny-byte", 257, 512),
    BaseModelDescription("tiny-bpe", "zero-work (no model)", "tinker-actors/tiny-bpe", 768, 512),
)
_ZERO_WORK_MAX_TOKENS = 16


class _ZeroWorkSampler:
    def sample(self, args: SampleArgs) -> SampleOutput:
        length = min(args.max_tokens if args.max_tokens is not None else 1, _ZERO_WORK_MAX_TOKENS)
        topk: TopkArrays | None = None
        if args.topk_sample_logprobs > 0:
            shape = (length, args.topk_sample_logprobs)
            topk = (np.ones(shape, np.int32), np.zeros(shape, np.float32))
        sequence = GeneratedSequence(tokens=[1] * length, logprobs=[0.0] * length, stop_reason="length", topk=topk)
        prompt_lp: list[float | None] | None = None
        topk_prompt: list[list[tuple[int, float]] | None] | None = None
        first = 1 if args.prompt_logprobs_last_n is None else len(args.prompt) - args.prompt_logprobs_last_n
        if args.prompt_logprobs:
            prompt_lp = [None] * first + [0.0] * (len(args.prompt) - first)
        if args.topk_prompt_logprobs > 0:
            topk_prompt = [None] * first + [[(1, 0.0)] * args.topk_prompt_logprobs
                                            for _ in args.prompt[first:]]
        targets = None if args.target_rows is None else np.zeros(args.target_rows.shape, np.float32)
        alt = None
        if args.prompt_alt_tokens_k > 0:
            shape = (len(args.prompt) - 1, args.prompt_alt_tokens_k)
            alt = (np.ones(shape, np.int64), np.zeros(shape, np.float32))
        return SampleOutput([sequence] * args.num_samples, prompt_lp, topk_prompt, targets, alt)


@dataclass
class _ZeroWorkTrainer:
    state_arrays: Arrays = field(default_factory=lambda: {"zero_work.lora": np.zeros(1, np.float32)})

    def run(self, batch: list[DatumInput], loss_fn: str, loss_fn_config: dict[str, float | str] | None,
            *, backward: bool) -> StepOutput:
        outputs: list[Arrays] = []
        for datum in batch:
            zeros = np.zeros(len(datum.tokens), dtype=np.float32)
            outputs.append({"logprobs": zeros, "elementwise_loss": zeros})
        return StepOutput(outputs, {"loss:sum": 0.0})

    def optim_step(self, adam: AdamSettings) -> dict[str, float]:
        return {}

    def state(self, *, with_optimizer: bool) -> Arrays:
        return dict(self.state_arrays)

    def load_state(self, arrays: Arrays, *, with_optimizer: bool) -> None:
        return None

    def sampler(self) -> SamplerEngine:
        return _ZeroWorkSampler()


class ZeroWorkBackend:
    """Trivial model operations with canned, correctly shaped results (for client benchmarks)."""

    instant = True

    def base_models(self) -> list[BaseModelDescription]:
        return list(_ZERO_WORK_MODELS)

    def describe(self, base_model: str) -> BaseModelDescription:
        for model in _ZERO_WORK_MODELS:
            if model.name == base_model:
                return model
        names = ", ".join(m.name for m in _ZERO_WORK_MODELS)
        raise ValueError(f"unknown base model {base_model!r}; the local service provides: {names}")

    def new_trainer(self, base_model: str, lora: LoraSpec) -> Trainer:
        self.describe(base_model)
        return _ZeroWorkTrainer()

    def new_sampler(self, base_model: str, lora_arrays: Arrays | None) -> SamplerEngine:
        self.describe(base_model)
        return _ZeroWorkSampler()
