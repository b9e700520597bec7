"""Sampler: text generation from a base model, optionally with a frozen copy of LoRA adapters.

The adapters are merged into the base matrices once (``W + scale * A @ B``), so decoding costs the same
as the base model. Decoding is incremental with a KV cache: the prompt is run once, then one position
per generated token. A Sampler never changes after construction, so concurrent ``sample`` calls from
several threads are safe.

Semantics:

- ``temperature`` 0 is greedy (argmax; the first index on ties); otherwise the logits are divided by it.
- ``top_k`` keeps the k most likely tokens (-1 or 0: no limit); then ``top_p`` keeps the smallest set of
  most likely tokens whose probability reaches ``top_p`` (always at least one).
- ``stop``: token ids, or strings searched in the decoded generated text (not the prompt). Generation
  of a sequence ends right after the token that produced a stop; that token is kept, stop_reason "stop".
  Otherwise it ends after ``max_tokens`` with stop_reason "length". End-of-text is not implied: pass
  ``info.eos_token_id`` in ``stop`` to stop there.
- Returned ``logprobs`` are those of the model itself (temperature 1, no top-k/top-p), the same numbers
  ``LoraTrainer.forward`` computes, so importance ratios of on-policy samples start at 1.
- ``seed`` makes the output reproducible across processes (numpy ``Generator`` seeded explicitly; one
  uniform draw per sequence per step). Without a seed the generator takes fresh OS entropy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model import transformer
from tinker_actors.local.model.checkpoint import LoraConfig, decode_params, param_key, read_lora_config
from tinker_actors.local.model.errors import ContextWindowExceeded, IncompatibleCheckpoint, InvalidModelInput
from tinker_actors.local.model.registry import BaseModelInfo, get_base_model, load_tokenizer
from tinker_actors.local.model.trainer import LoraTrainer
from tinker_actors.local.model.weights import BaseWeights, base_weights, lora_scale

Array = npt.NDArray[Any]

# max_tokens=None generates up to this many tokens (or what is left of the context window).
DEFAULT_MAX_TOKENS = 256

# Sequences decoded together; more samples are generated chunk after chunk, which bounds the KV
# cache's memory (about 1 KB per sequence and position) whatever num_samples is.
SAMPLES_PER_CHUNK = 256

StopReason = Literal["length", "stop"]


@dataclass(frozen=True)
class SampledSequence:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: StopReason


@dataclass(frozen=True)
class SampleOutput:
    sequences: list[SampledSequence]
    # One entry per prompt token, the first None (nothing precedes it); None when not requested.
    prompt_logprobs: list[float | None] | None = None
    # Per prompt position the k most likely tokens there as (token_id, logprob), the first None.
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None


@dataclass(frozen=True)
class _StopRule:
    token_ids: frozenset[int] = frozenset()
    strings: tuple[str, ...] = ()

    def hit(self, tokens: list[int], decode: Callable[[list[int]], str]) -> bool:
        if tokens[-1] in self.token_ids:
            return True
        if self.strings:
            text = decode(tokens)
            return any(s in text for s in self.strings)
        return False


@dataclass(eq=False)
class _Row:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_reason: StopReason = "length"
    done: bool = False


class Sampler:
    """Samples from `base` with the adapters of `lora_state` (``LoraTrainer.state`` arrays) if given."""

    def __init__(
        self,
        base: str,
        lora_state: Mapping[str, Array] | None = None,
        *,
        decode: Callable[[list[int]], str] | None = None,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        info = get_base_model(base)
        dtype = np.dtype(dtype)
        frozen = base_weights(info, dtype.name)
        self._lora_config: LoraConfig | None = None
        if lora_state is not None:
            config = read_lora_config(lora_state)
            if config.base_name != info.name:
                raise IncompatibleCheckpoint(
                    f"LoRA state was trained on {config.base_name}, cannot sample it on {info.name}"
                )
            frozen = _merged(frozen, config, decode_params(lora_state, config, np.dtype(np.float64)))
            self._lora_config = config
        self._info = info
        self._weights = transformer.ModelWeights(base=frozen, lora={}, scale=1.0)
        self._decode = decode if decode is not None else _tokenizer_decode(info.name)

    @classmethod
    def from_trainer(cls, trainer: LoraTrainer, *, decode: Callable[[list[int]], str] | None = None) -> Sampler:
        """A sampler over a copy of the trainer's current adapters (later training does not affect it)."""
        return cls(trainer.base_name, trainer.state(with_optimizer=False), decode=decode, dtype=trainer.dtype)

    @property
    def base_name(self) -> str:
        return self._info.name

    @property
    def info(self) -> BaseModelInfo:
        return self._info

    @property
    def lora_config(self) -> LoraConfig | None:
        """The adapters' config, or None when sampling the plain base model."""
        return self._lora_config

    def sample(
        self,
        prompt: Sequence[int],
        num_samples: int = 1,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        top_k: int = -1,
        top_p: float = 1.0,
        stop: str | Sequence[str] | Sequence[int] | None = None,
        seed: int | None = None,
        prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
    ) -> SampleOutput:
        info = self._info
        tokens = _prompt_tokens(prompt, info.vocab_size)
        new_tokens = _max_new_tokens(len(tokens), max_tokens, info.context_window)
        _check_sampling(num_samples, temperature, top_k, top_p, topk_prompt_logprobs)
        stop_rule = _stop_rule(stop)
        rng = np.random.default_rng(None if seed is None else seed % 2**63)

        want_prompt = bool(prompt_logprobs) or topk_prompt_logprobs > 0
        cache = transformer.KVCache.empty(self._weights, 1, len(tokens) + new_tokens)
        logits = transformer.decode(self._weights, np.asarray([tokens], dtype=np.int64), cache, want_prompt)[0]
        output_prompt: list[float | None] | None = None
        output_topk: list[list[tuple[int, float]] | None] | None = None
        if want_prompt:
            logp = _log_softmax(logits)
            if prompt_logprobs:
                output_prompt = [None] + [float(logp[i - 1, tokens[i]]) for i in range(1, len(tokens))]
            if topk_prompt_logprobs > 0:
                output_topk = [None] + [_top_entries(logp[i - 1], topk_prompt_logprobs) for i in range(1, len(tokens))]

        rows = [_Row() for _ in range(num_samples)]
        if new_tokens > 0:
            for first in range(0, num_samples, SAMPLES_PER_CHUNK):
                chunk = rows[first : first + SAMPLES_PER_CHUNK]
                self._generate(chunk, logits[-1], cache, new_tokens, temperature, top_k, top_p, stop_rule, rng)
        return SampleOutput(
            sequences=[SampledSequence(r.tokens, r.logprobs, r.stop_reason) for r in rows],
            prompt_logprobs=output_prompt,
            topk_prompt_logprobs=output_topk,
        )

    def _generate(
        self,
        rows: list[_Row],
        last_logits: Array,
        prompt_cache: transformer.KVCache,
        new_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        stop_rule: _StopRule,
        rng: np.random.Generator,
    ) -> None:
        cache = prompt_cache.repeat_rows(len(rows))  # a copy: the prompt cache serves every chunk
        live = list(range(len(rows)))  # row index of each cache row
        logits = np.repeat(last_logits[None, :], len(rows), axis=0)
        for step in range(new_tokens):
            logp = _log_softmax(logits)
            fed = []
            for cache_row, row_index in enumerate(live):
                token = _choose(logits[cache_row], temperature, top_k, top_p, rng)
                row = rows[row_index]
                row.tokens.append(token)
                row.logprobs.append(float(logp[cache_row, token]))
                if stop_rule.hit(row.tokens, self._decode):
                    row.stop_reason, row.done = "stop", True
                fed.append(token)
            if step == new_tokens - 1:
                break
            keep = [i for i, row_index in enumerate(live) if not rows[row_index].done]
            if not keep:
                break
            if len(keep) < len(live):
                cache.keys = [k[keep] for k in cache.keys]
                cache.values = [v[keep] for v in cache.values]
                live = [live[i] for i in keep]
                fed = [fed[i] for i in keep]
            step_tokens = np.asarray(fed, dtype=np.int64)[:, None]
            logits = transformer.decode(self._weights, step_tokens, cache, all_positions=False)[:, 0]


def _merged(frozen: BaseWeights, config: LoraConfig, params: Mapping[str, Array]) -> BaseWeights:
    scale = lora_scale(config.rank)
    matrices = dict(frozen.matrices)
    for name in config.targets():
        delta = scale * (params[param_key(name, "a")] @ params[param_key(name, "b")])
        merged = (matrices[name].astype(np.float64) + delta).astype(frozen.dtype)
        merged.setflags(write=False)
        matrices[name] = merged
    return BaseWeights(info=frozen.info, embed=frozen.embed, positions=frozen.positions, matrices=matrices)


def _tokenizer_decode(name: str) -> Callable[[list[int]], str]:
    tokenizer = load_tokenizer(name)

    def decode(tokens: list[int]) -> str:
        return str(tokenizer.decode(tokens))

    return decode


def _log_softmax(logits: Array) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


def _top_entries(logp_row: npt.NDArray[np.float64], k: int) -> list[tuple[int, float]]:
    order = np.argsort(-logp_row, kind="stable")[:k]
    return [(int(token), float(logp_row[token])) for token in order]


def _choose(logits_row: Array, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> int:
    """One token from the filtered, tempered distribution (one uniform draw, or none when greedy)."""
    if temperature == 0:
        return int(np.argmax(logits_row))
    z = logits_row.astype(np.float64) / temperature
    vocab = z.shape[0]
    if (top_k <= 0 or top_k >= vocab) and top_p >= 1.0:
        candidates = np.arange(vocab)
    else:
        candidates = np.argsort(-z, kind="stable")
        if 0 < top_k < vocab:
            candidates = candidates[:top_k]
    weights = np.exp(z[candidates] - z[candidates].max())
    probs = weights / weights.sum()
    if top_p < 1.0:
        # candidates are sorted here: keep a token while the mass before it is still below top_p
        keep = int(np.count_nonzero(np.cumsum(probs) - probs < top_p))
        candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
    index = int(np.searchsorted(np.cumsum(probs), rng.random(), side="right"))
    return int(candidates[min(index, len(candidates) - 1)])


def _prompt_tokens(prompt: Sequence[int], vocab_size: int) -> list[int]:
    tokens = []
    for token in prompt:
        if isinstance(token, bool) or not isinstance(token, int | np.integer):
            raise InvalidModelInput(f"prompt tokens must be integers, got {token!r}")
        if not 0 <= int(token) < vocab_size:
            raise InvalidModelInput(f"prompt token {int(token)} is outside the vocabulary [0, {vocab_size})")
        tokens.append(int(token))
    if not tokens:
        raise InvalidModelInput("the prompt is empty")
    return tokens


def _max_new_tokens(prompt_len: int, max_tokens: int | None, context_window: int) -> int:
    if max_tokens is None:
        if prompt_len >= context_window:
            raise ContextWindowExceeded(
                f"Prompt length {prompt_len} leaves no room in the model's context window {context_window}"
            )
        return min(DEFAULT_MAX_TOKENS, context_window - prompt_len)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int | np.integer) or max_tokens < 0:
        raise InvalidModelInput(f"max_tokens must be a non-negative integer or None, got {max_tokens!r}")
    if prompt_len + max_tokens > context_window:
        raise ContextWindowExceeded(
            "Prompt length plus max_tokens exceeds the model's context window: "
            f"{prompt_len} + {max_tokens} > {context_window}"
        )
    return int(max_tokens)


def _check_sampling(num_samples: int, temperature: float, top_k: int, top_p: float, topk_prompt: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise InvalidModelInput(f"num_samples must be a positive integer, got {num_samples!r}")
    if not (np.isfinite(temperature) and temperature >= 0):
        raise InvalidModelInput(f"temperature must be a finite number >= 0, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
        raise InvalidModelInput(f"top_k must be -1 (no limit) or a positive integer, got {top_k!r}")
    if not (np.isfinite(top_p) and 0 < top_p <= 1):
        raise InvalidModelInput(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(topk_prompt, bool) or not isinstance(topk_prompt, int) or topk_prompt < 0:
        raise InvalidModelInput(f"topk_prompt_logprobs must be a non-negative integer, got {topk_prompt!r}")


def _stop_rule(stop: str | Sequence[str] | Sequence[int] | None) -> _StopRule:
    if stop is None:
        return _StopRule()
    items: list[object] = [stop] if isinstance(stop, str) else list(stop)
    strings = [s for s in items if isinstance(s, str)]
    token_ids = [int(s) for s in items if isinstance(s, int | np.integer) and not isinstance(s, bool)]
    if len(strings) == len(items):
        if any(s == "" for s in strings):
            raise InvalidModelInput("stop strings must not be empty")
        return _StopRule(strings=tuple(strings))
    if len(token_ids) == len(items):
        return _StopRule(token_ids=frozenset(token_ids))
    raise InvalidModelInput("stop must be a string, a list of strings or a list of token ids")
