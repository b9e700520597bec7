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
  Otherwise it ends after ``max_tokens`` with stop_reason "length". End-of-text (``info.eos_token_id``)
  stops too unless ``stop`` is an empty list: ``None`` means "end-of-text only", ``[]`` means "nothing
  stops before max_tokens" (protocol 0.38's rule), a list means "these, and end-of-text".
- Returned ``logprobs`` are those of the model itself (temperature 1, no top-k/top-p), the same numbers
  ``LoraTrainer.forward`` computes, so importance ratios of on-policy samples start at 1. So are the
  top-k alternatives of each generated token (``topk_sample_logprobs``): the k most likely tokens of the
  model's own distribution at that position, which holds the sampled token's logprob when it is among them.
- ``seed`` makes the output reproducible across processes (numpy ``Generator`` seeded explicitly; one
  uniform draw per sequence per step). Without a seed the generator takes fresh OS entropy.

Prompt outputs (row ``i`` of the prompt's logits is the distribution over prompt token ``i + 1``):

- ``prompt_logprobs`` / ``topk_prompt_logprobs``: per prompt position, the first None; with
  ``prompt_logprobs_last_n`` only the last N positions are scored (the others None).
- ``targets`` (:class:`PromptTargets`): the logprob of chosen token ids at chosen positions.
- ``prompt_alt_tokens_k``: k independent draws, with replacement and at the request's temperature (no
  top-k/top-p), from the distribution at every prompt position after the first, with the model's logprob
  of each. They come from their own random stream (derived from ``seed``), so asking for them does not
  change the generated sequences.

Prefix cache (``prefix_cache.py``): with a :class:`PrefixCache`, the prompt's KV is looked up before the
prefill and stored after it. Only positions whose logits nothing asks for may come from the cache: the
hit stops at the first scored prompt position (all of them by default for prompt logprobs and alternative
tokens, the last N with ``prompt_logprobs_last_n``, the first target row) and always leaves the last
prompt token to run. ``SampleOutput.prompt_cache_hit_tokens`` says how many prompt tokens were served from
it; the results are the same (up to float rounding) with or without a hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tinker_actors.local.model import transformer
from tinker_actors.local.model.checkpoint import LoraConfig, decode_params, param_key, read_lora_config
from tinker_actors.local.model.errors import ContextWindowExceeded, IncompatibleCheckpoint, InvalidModelInput
from tinker_actors.local.model.generation_stop import token_step
from tinker_actors.local.model.prefix_cache import PrefixCache
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

# The random stream of prompt_alt_tokens draws, apart from the generation's (same seed, another stream).
_ALT_TOKENS_STREAM = 0xA17


def _arrays_equal(left: Sequence[Array | None], right: Sequence[Array | None]) -> bool:
    return all((a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
               for a, b in zip(left, right, strict=True))


@dataclass(frozen=True, eq=False)
class TopK:
    """The k most likely tokens at each of ``n`` positions, most likely first: int32 ``token_ids [n, k]`` and
    float32 ``logprobs [n, k]``."""

    token_ids: npt.NDArray[np.int32]
    logprobs: npt.NDArray[np.float32]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopK):
            return NotImplemented
        return _arrays_equal((self.token_ids, self.logprobs), (other.token_ids, other.logprobs))

    def rows(self) -> list[list[tuple[int, float]]]:
        """As lists of ``(token_id, logprob)`` pairs, one list per position."""
        return [list(zip(ids, lps, strict=True))
                for ids, lps in zip(self.token_ids.tolist(), self.logprobs.tolist(), strict=True)]


@dataclass(frozen=True, eq=False)
class PromptTargets:
    """Token ids to score in the prompt: ``token_ids[j]`` at prompt position ``rows[j] + 1`` (row ``i`` of the
    prompt's logits is the distribution over prompt token ``i + 1``)."""

    rows: npt.NDArray[np.int64]
    token_ids: npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class AltTokens:
    """``k`` draws at every prompt position after the first: int64 ``tokens [len(prompt) - 1, k]`` (row ``i``:
    alternatives to prompt token ``i + 1``) and float32 ``logprobs`` (the model's, at temperature 1)."""

    tokens: npt.NDArray[np.int64]
    logprobs: npt.NDArray[np.float32]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AltTokens):
            return NotImplemented
        return _arrays_equal((self.tokens, self.logprobs), (other.tokens, other.logprobs))


@dataclass(frozen=True)
class SampledSequence:
    tokens: list[int]
    logprobs: list[float]
    stop_reason: StopReason
    # The top-k alternatives at each generated position (topk_sample_logprobs > 0), else None.
    topk: TopK | None = None


@dataclass(frozen=True, eq=False)
class SampleOutput:
    sequences: list[SampledSequence]
    # One entry per prompt token, the first None (nothing precedes it); None when not requested.
    prompt_logprobs: list[float | None] | None = None
    # Per prompt position the k most likely tokens there as (token_id, logprob), the first None.
    topk_prompt_logprobs: list[list[tuple[int, float]] | None] | None = None
    # float32, one per PromptTargets pair; None when no targets were given.
    target_logprobs: npt.NDArray[np.float32] | None = None
    alt_tokens: AltTokens | None = None
    # Prompt tokens whose keys and values came from the prefix cache.
    prompt_cache_hit_tokens: int = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleOutput):
            return NotImplemented
        return (self.sequences == other.sequences and self.prompt_logprobs == other.prompt_logprobs
                and self.topk_prompt_logprobs == other.topk_prompt_logprobs
                and _arrays_equal((self.target_logprobs,), (other.target_logprobs,))
                and self.alt_tokens == other.alt_tokens
                and self.prompt_cache_hit_tokens == other.prompt_cache_hit_tokens)


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
    topk_ids: list[Array] = field(default_factory=list)
    topk_logprobs: list[Array] = field(default_factory=list)
    stop_reason: StopReason = "length"
    done: bool = False

    def sequence(self, topk: int) -> SampledSequence:
        top = None
        if topk > 0:
            if self.topk_ids:
                top = TopK(np.stack(self.topk_ids).astype(np.int32), np.stack(self.topk_logprobs).astype(np.float32))
            else:
                top = TopK(np.zeros((0, topk), np.int32), np.zeros((0, topk), np.float32))
        return SampledSequence(self.tokens, self.logprobs, self.stop_reason, top)


class Sampler:
    """Samples from `base` with the adapters of `lora_state` (``LoraTrainer.state`` arrays) if given.

    With a ``prefix_cache``, prompts reuse the keys and values of prefixes this sampler (or any sampler with
    the very same weights) ran before.
    """

    def __init__(
        self,
        base: str,
        lora_state: Mapping[str, Array] | None = None,
        *,
        decode: Callable[[list[int]], str] | None = None,
        dtype: npt.DTypeLike = np.float32,
        prefix_cache: PrefixCache | None = None,
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
        self._prefix_cache = prefix_cache
        self._version = _weights_version(frozen) if prefix_cache is not None else b""

    @classmethod
    def from_trainer(cls, trainer: LoraTrainer, *, decode: Callable[[list[int]], str] | None = None,
                     prefix_cache: PrefixCache | None = None) -> Sampler:
        """A sampler over a copy of the trainer's current adapters (later training does not affect it)."""
        return cls(trainer.base_name, trainer.state(with_optimizer=False), decode=decode, dtype=trainer.dtype,
                   prefix_cache=prefix_cache)

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

    @property
    def prefix_cache(self) -> PrefixCache | None:
        return self._prefix_cache

    @property
    def weights_version(self) -> bytes:
        """A digest of the weights this sampler decodes with (the prefix cache's key); computed on first use."""
        if not self._version:
            self._version = _weights_version(self._weights.base)
        return self._version

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
        *,
        prompt_logprobs_last_n: int | None = None,
        topk_sample_logprobs: int = 0,
        targets: PromptTargets | None = None,
        prompt_alt_tokens_k: int = 0,
    ) -> SampleOutput:
        info = self._info
        tokens = _prompt_tokens(prompt, info.vocab_size)
        length = len(tokens)
        new_tokens = _max_new_tokens(length, max_tokens, info.context_window)
        _check_sampling(num_samples, temperature, top_k, top_p, topk_prompt_logprobs)
        _check_width("topk_sample_logprobs", topk_sample_logprobs)
        _check_width("prompt_alt_tokens_k", prompt_alt_tokens_k)
        first_scored = _first_scored(length, prompt_logprobs_last_n, bool(prompt_logprobs) or topk_prompt_logprobs > 0)
        if targets is not None:
            _check_targets(targets, length, info.vocab_size)
        stop_rule = _stop_rule(stop, info.eos_token_id)
        rng = np.random.default_rng(None if seed is None else seed % 2**63)

        # The first row of logits anything asks for: positions before it may come from the prefix cache.
        needed = [length - 1]
        if first_scored is not None:
            needed.append(first_scored - 1)
        if targets is not None and targets.rows.size:
            needed.append(int(targets.rows.min()))
        if prompt_alt_tokens_k > 0:
            needed.append(0)
        want_rows = len(needed) > 1

        cache = transformer.KVCache.empty(self._weights, 1, length + new_tokens)
        hit = self._from_prefix_cache(tokens, min(needed), cache)
        fed = np.asarray([tokens[hit:]], dtype=np.int64)
        logits = transformer.decode(self._weights, fed, cache, want_rows)[0]  # rows hit .. length - 1 (or the last)
        if self._prefix_cache is not None:
            self._prefix_cache.store(self.weights_version, tokens, cache.keys, cache.values,
                                     start_block=hit // self._prefix_cache.block_tokens)

        output_prompt: list[float | None] | None = None
        output_topk: list[list[tuple[int, float]] | None] | None = None
        target_logprobs: npt.NDArray[np.float32] | None = None
        alt_tokens: AltTokens | None = None
        if want_rows:
            logp = _log_softmax(logits)  # row r of the prompt is logp[r - hit]
            if first_scored is not None:
                unscored: list[None] = [None] * first_scored
                positions = range(first_scored, length)
                if prompt_logprobs:
                    output_prompt = [*unscored, *(float(logp[i - 1 - hit, tokens[i]]) for i in positions)]
                if topk_prompt_logprobs > 0:
                    output_topk = [*unscored, *(_top_entries(logp[i - 1 - hit], topk_prompt_logprobs)
                                                for i in positions)]
            if targets is not None:
                target_logprobs = logp[targets.rows - hit, targets.token_ids].astype(np.float32)
            if prompt_alt_tokens_k > 0:
                alt_tokens = _alt_tokens(logits[: length - 1], logp[: length - 1], prompt_alt_tokens_k, temperature,
                                         seed)

        rows = [_Row() for _ in range(num_samples)]
        if new_tokens > 0:
            for first in range(0, num_samples, SAMPLES_PER_CHUNK):
                chunk = rows[first : first + SAMPLES_PER_CHUNK]
                self._generate(chunk, logits[-1], cache, new_tokens, temperature, top_k, top_p, stop_rule, rng,
                               topk_sample_logprobs)
        return SampleOutput(
            sequences=[r.sequence(topk_sample_logprobs) for r in rows],
            prompt_logprobs=output_prompt,
            topk_prompt_logprobs=output_topk,
            target_logprobs=target_logprobs,
            alt_tokens=alt_tokens,
            prompt_cache_hit_tokens=hit,
        )

    def _from_prefix_cache(self, tokens: list[int], limit: int, cache: transformer.KVCache) -> int:
        """Fills ``cache`` with the longest cached prefix of ``tokens`` of at most ``limit`` tokens; its length."""
        if self._prefix_cache is None or limit <= 0:
            return 0
        blocks = self._prefix_cache.lookup(self.weights_version, tokens, limit)
        size = self._prefix_cache.block_tokens
        for index, block in enumerate(blocks):
            span = slice(index * size, (index + 1) * size)
            for layer, (keys, values) in enumerate(zip(block.keys, block.values, strict=True)):
                cache.keys[layer][0, :, span] = keys
                cache.values[layer][0, :, span] = values
        cache.length = len(blocks) * size
        return cache.length

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
        topk: int,
    ) -> None:
        cache = prompt_cache.repeat_rows(len(rows))  # a copy: the prompt cache serves every chunk
        live = list(range(len(rows)))  # row index of each cache row
        logits = np.repeat(last_logits[None, :], len(rows), axis=0)
        for step in range(new_tokens):
            logp = _log_softmax(logits)
            top_ids, top_logprobs = _top_k_rows(logp, topk) if topk > 0 else (None, None)
            fed = []
            for cache_row, row_index in enumerate(live):
                token = _choose(logits[cache_row], temperature, top_k, top_p, rng)
                row = rows[row_index]
                row.tokens.append(token)
                row.logprobs.append(float(logp[cache_row, token]))
                if top_ids is not None and top_logprobs is not None:
                    row.topk_ids.append(top_ids[cache_row])
                    row.topk_logprobs.append(top_logprobs[cache_row])
                if stop_rule.hit(row.tokens, self._decode):
                    row.stop_reason, row.done = "stop", True
                fed.append(token)
            token_step(len(live))  # a cancelled sample stops here, at its next token
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
    return BaseWeights(info=frozen.info, embed=frozen.embed, positions=frozen.positions, matrices=matrices,
                       logit_bias=frozen.logit_bias)


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


def _stop_rule(stop: str | Sequence[str] | Sequence[int] | None, eos_token_id: int) -> _StopRule:
    """None: end-of-text only; []: nothing; otherwise the given stops and end-of-text."""
    if stop is None:
        return _StopRule(token_ids=frozenset([eos_token_id]))
    items: list[object] = [stop] if isinstance(stop, str) else list(stop)
    if not items:
        return _StopRule()
    strings = [s for s in items if isinstance(s, str)]
    token_ids = [int(s) for s in items if isinstance(s, int | np.integer) and not isinstance(s, bool)]
    if len(strings) == len(items):
        if any(s == "" for s in strings):
            raise InvalidModelInput("stop strings must not be empty")
        return _StopRule(token_ids=frozenset([eos_token_id]), strings=tuple(strings))
    if len(token_ids) == len(items):
        return _StopRule(token_ids=frozenset([*token_ids, eos_token_id]))
    raise InvalidModelInput("stop must be a string, a list of strings or a list of token ids")


def _weights_version(weights: BaseWeights) -> bytes:
    """A digest of everything decoding reads: model, dtype, embeddings and every (merged) matrix."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{weights.info.name}|{weights.dtype}".encode())
    for array in (weights.embed, weights.positions, weights.logit_bias):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    for name in sorted(weights.matrices):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights.matrices[name]).tobytes())
    return digest.digest()


def _check_width(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidModelInput(f"{name} must be a non-negative integer, got {value!r}")


def _first_scored(length: int, last_n: int | None, scoring: bool) -> int | None:
    """The first prompt position whose logprob (or top-k) is returned, or None when none is asked for."""
    if last_n is None:
        return 1 if scoring else None
    if isinstance(last_n, bool) or not isinstance(last_n, int | np.integer):
        raise InvalidModelInput(f"prompt_logprobs_last_n must be an integer or None, got {last_n!r}")
    if not scoring:
        raise InvalidModelInput("prompt_logprobs_last_n needs prompt_logprobs or topk_prompt_logprobs")
    if not 1 <= last_n <= length - 1:
        raise InvalidModelInput(f"prompt_logprobs_last_n must be between 1 and the prompt length - 1 "
                                f"({length - 1}), got {last_n}")
    return length - int(last_n)


def _check_targets(targets: PromptTargets, length: int, vocab_size: int) -> None:
    rows, ids = targets.rows, targets.token_ids
    if rows.ndim != 1 or ids.shape != rows.shape:
        raise InvalidModelInput("prompt targets need as many rows as token ids (1-D)")
    if not (rows.dtype.kind in "iu" and ids.dtype.kind in "iu"):
        raise InvalidModelInput("prompt target rows and token ids must be integers")
    if rows.size == 0:
        raise InvalidModelInput("prompt targets name no token id")
    if int(rows.min()) < 0 or int(rows.max()) > length - 2:
        raise InvalidModelInput(f"prompt target rows must lie in [0, {length - 2}] (row i scores prompt position "
                                f"i + 1 of {length})")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise InvalidModelInput(f"prompt target token ids must lie in [0, {vocab_size})")


def _top_k_rows(logp: npt.NDArray[np.float64], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The ``k`` largest entries of each row, largest first (ties: the lower token id first)."""
    vocab = logp.shape[1]
    k = min(k, vocab)
    if k < vocab:
        candidates = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(vocab), logp.shape)
    values = np.take_along_axis(logp, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    ids = np.take_along_axis(candidates, order, axis=1)
    return ids, np.take_along_axis(values, order, axis=1)


def _alt_tokens(logits: Array, logp: npt.NDArray[np.float64], k: int, temperature: float,
                seed: int | None) -> AltTokens:
    """``k`` draws per row from ``softmax(logits / temperature)`` (argmax at temperature 0), with their logprobs
    under ``logp`` (the model's own)."""
    rows, vocab = logits.shape
    if rows == 0:
        return AltTokens(np.zeros((0, k), np.int64), np.zeros((0, k), np.float32))
    if temperature == 0:
        tokens = np.repeat(np.argmax(logits, axis=1)[:, None], k, axis=1).astype(np.int64)
    else:
        rng = np.random.default_rng(None if seed is None else [seed % 2**63, _ALT_TOKENS_STREAM])
        z = logits.astype(np.float64) / temperature
        z -= z.max(axis=1, keepdims=True)
        cdf = np.cumsum(np.exp(z), axis=1)
        cdf /= cdf[:, -1:]
        cdf[:, -1] = 1.0
        # Row r's cumulative distribution shifted by r is one rising sequence: one searchsorted for all rows.
        offsets = np.arange(rows, dtype=np.float64)[:, None]
        flat = (cdf + offsets).ravel()
        draws = rng.random((rows, k)) + offsets
        tokens = (np.searchsorted(flat, draws.ravel(), side="right").reshape(rows, k)
                  - np.arange(rows)[:, None] * vocab)
        tokens = np.minimum(tokens, vocab - 1).astype(np.int64)
    logprobs = np.take_along_axis(logp, tokens, axis=1).astype(np.float32)
    return AltTokens(tokens, logprobs)
