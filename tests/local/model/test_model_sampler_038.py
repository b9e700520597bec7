"""Sampler outputs of protocol 0.38, checked against the model's own forward computation: top-k logprobs of
generated tokens, logprobs of chosen prompt tokens, the last N prompt logprobs, alternative prompt tokens,
end-of-text and ``stop=[]``, and the prefix cache (hits, limits, weights versions, LRU bound, cost)."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest

from tinker_actors.local.model import (
    DatumArrays,
    InvalidModelInput,
    LoraTrainer,
    PrefixCache,
    PromptTargets,
    Sampler,
    load_tokenizer,
)

from .helpers import randomize_lora

PROMPT = load_tokenizer("tiny-byte").encode("Q: What is 5 plus 2?\nA:").ids
LONG = load_tokenizer("tiny-byte").encode("The river runs to the sea, and the sea is never full. " * 6).ids


def _trainer(base: str = "tiny-byte") -> LoraTrainer:
    trainer = LoraTrainer(base, rank=8, seed=1)
    randomize_lora(trainer, 21, b_std=0.05)
    return trainer


def _distributions(trainer: LoraTrainer, tokens: list[int]) -> npt.NDArray[np.float64]:
    """log p(v | tokens[:i + 1]) for every position i and every token v, from the trainer's forward pass."""
    vocab = trainer.info.vocab_size
    targets = np.tile(np.arange(vocab, dtype=np.int64), (len(tokens), 1))
    datum = DatumArrays(tokens=np.asarray(tokens, dtype=np.int64), loss_inputs={"target_tokens": targets})
    logprobs: npt.NDArray[np.float64] = trainer.forward([datum], "cross_entropy").outputs[0]["logprobs"]
    return logprobs.astype(np.float64)


# ---- top-k of the generated tokens ------------------------------------------------------------------

def test_topk_sample_logprobs_are_the_k_most_likely_tokens_of_the_models_own_distribution() -> None:
    trainer = _trainer()
    sampler = Sampler.from_trainer(trainer)
    stops = list(range(97, 110))  # a dozen common lowercase letters
    out = sampler.sample(PROMPT, num_samples=6, max_tokens=10, seed=5, temperature=0.7, top_p=0.9,
                         topk_sample_logprobs=5, stop=stops)
    assert {s.stop_reason for s in out.sequences} == {"stop", "length"}  # rows dropped on the way
    for sequence in out.sequences:
        top = sequence.topk
        assert top is not None and top.token_ids.shape == top.logprobs.shape == (len(sequence.tokens), 5)
        assert top.token_ids.dtype == np.int32 and top.logprobs.dtype == np.float32
        full = _distributions(trainer, PROMPT + sequence.tokens)[len(PROMPT) - 1: -1]
        for position, token in enumerate(sequence.tokens):
            expected = np.argsort(-full[position], kind="stable")[:5]
            assert top.token_ids[position].tolist() == expected.tolist()
            np.testing.assert_allclose(top.logprobs[position], full[position, expected], atol=2e-4)
            if token in expected:  # the sampled token's entry is its logprob (before temperature and top-p)
                slot = expected.tolist().index(token)
                assert top.logprobs[position, slot] == pytest.approx(sequence.logprobs[position], abs=1e-5)
    # asking for them changes nothing else
    plain = sampler.sample(PROMPT, num_samples=6, max_tokens=10, seed=5, temperature=0.7, top_p=0.9, stop=stops)
    assert [s.tokens for s in plain.sequences] == [s.tokens for s in out.sequences]
    assert all(s.topk is None for s in plain.sequences)


def test_topk_sample_logprobs_wider_than_the_vocabulary_and_of_no_tokens() -> None:
    sampler = Sampler("tiny-byte")
    wide = sampler.sample(PROMPT, max_tokens=2, seed=1, topk_sample_logprobs=1000).sequences[0].topk
    assert wide is not None and wide.token_ids.shape == (2, 257)
    assert sorted(wide.token_ids[0].tolist()) == list(range(257))
    assert np.all(np.diff(wide.logprobs[0]) <= 0)
    empty = sampler.sample(PROMPT, max_tokens=0, topk_sample_logprobs=3).sequences[0].topk
    assert empty is not None and empty.token_ids.shape == (0, 3)


# ---- prompt logprobs: chosen tokens, the last N, alternatives ----------------------------------------

def test_target_prompt_logprobs_are_the_forward_logprobs_of_the_chosen_tokens() -> None:
    trainer = _trainer("tiny-bpe")
    sampler = Sampler.from_trainer(trainer)
    prompt = load_tokenizer("tiny-bpe").encode("How a map is made: a map is a promise.").ids
    full = _distributions(trainer, prompt)
    rows = np.array([0, 0, 3, len(prompt) - 2], dtype=np.int64)
    ids = np.array([prompt[1], 7, 700, 0], dtype=np.int64)
    out = sampler.sample(prompt, max_tokens=1, seed=0, targets=PromptTargets(rows, ids))
    assert out.target_logprobs is not None and out.target_logprobs.dtype == np.float32
    np.testing.assert_allclose(out.target_logprobs, full[rows, ids], atol=2e-4)
    assert out.prompt_logprobs is None  # only what was asked


def test_prompt_logprobs_last_n_scores_only_the_last_positions() -> None:
    trainer = _trainer()
    sampler = Sampler.from_trainer(trainer)
    whole = sampler.sample(PROMPT, max_tokens=1, prompt_logprobs=True, topk_prompt_logprobs=2, seed=0)
    last = sampler.sample(PROMPT, max_tokens=1, prompt_logprobs=True, topk_prompt_logprobs=2, seed=0,
                          prompt_logprobs_last_n=3)
    assert whole.prompt_logprobs is not None and last.prompt_logprobs is not None
    assert last.prompt_logprobs[:-3] == [None] * (len(PROMPT) - 3)
    np.testing.assert_allclose(last.prompt_logprobs[-3:], whole.prompt_logprobs[-3:], atol=1e-6)  # type: ignore[arg-type]
    assert last.topk_prompt_logprobs is not None and whole.topk_prompt_logprobs is not None
    assert last.topk_prompt_logprobs[:-3] == [None] * (len(PROMPT) - 3)
    assert [[t for t, _ in row or []] for row in last.topk_prompt_logprobs[-3:]] == \
        [[t for t, _ in row or []] for row in whole.topk_prompt_logprobs[-3:]]
    for bad in (0, len(PROMPT)):
        with pytest.raises(InvalidModelInput, match="prompt_logprobs_last_n"):
            sampler.sample(PROMPT, max_tokens=1, prompt_logprobs=True, prompt_logprobs_last_n=bad)
    with pytest.raises(InvalidModelInput, match="needs prompt_logprobs"):
        sampler.sample(PROMPT, max_tokens=1, prompt_logprobs_last_n=2)


def test_prompt_alt_tokens_are_draws_at_the_temperature_with_the_models_logprobs() -> None:
    trainer = _trainer()
    sampler = Sampler.from_trainer(trainer)
    full = _distributions(trainer, PROMPT)[:-1]  # row i: the distribution over prompt token i + 1
    out = sampler.sample(PROMPT, max_tokens=3, seed=8, prompt_alt_tokens_k=6, temperature=0.8)
    alt = out.alt_tokens
    assert alt is not None and alt.tokens.shape == alt.logprobs.shape == (len(PROMPT) - 1, 6)
    assert alt.tokens.dtype == np.int64 and alt.logprobs.dtype == np.float32
    np.testing.assert_allclose(alt.logprobs, np.take_along_axis(full, alt.tokens, axis=1), atol=2e-4)
    # reproducible with the seed, and the generated tokens are those of a request without draws
    assert sampler.sample(PROMPT, max_tokens=3, seed=8, prompt_alt_tokens_k=6, temperature=0.8) == out
    plain = sampler.sample(PROMPT, max_tokens=3, seed=8, temperature=0.8)
    assert [s.tokens for s in plain.sequences] == [s.tokens for s in out.sequences] and plain.alt_tokens is None
    np.testing.assert_allclose(plain.sequences[0].logprobs, out.sequences[0].logprobs, atol=1e-5)
    # temperature 0: the most likely token, k times
    greedy = sampler.sample(PROMPT, max_tokens=1, prompt_alt_tokens_k=2, temperature=0).alt_tokens
    assert greedy is not None
    assert greedy.tokens.tolist() == [[int(np.argmax(row))] * 2 for row in full]


def test_prompt_alt_tokens_follow_the_tempered_distribution() -> None:
    sampler = Sampler("tiny-byte")
    prompt = PROMPT[:3]
    full = _distributions(LoraTrainer("tiny-byte", rank=1), prompt)[:-1]  # B = 0: the base model itself
    count, temperature = 6000, 0.5
    alt = sampler.sample(prompt, max_tokens=1, seed=2, prompt_alt_tokens_k=count, temperature=temperature).alt_tokens
    assert alt is not None
    for row in range(len(prompt) - 1):
        tempered = np.exp(full[row] / temperature - np.logaddexp.reduce(full[row] / temperature))
        for token in np.argsort(-tempered)[:3]:
            p = tempered[token]
            assert abs(np.mean(alt.tokens[row] == token) - p) < 5 * np.sqrt(p * (1 - p) / count)


def test_bad_038_sampling_arguments_are_user_errors() -> None:
    sampler = Sampler("tiny-byte")
    length = len(PROMPT)
    bad: list[dict[str, object]] = [
        {"topk_sample_logprobs": -1},
        {"prompt_alt_tokens_k": -2},
        {"targets": PromptTargets(np.array([length - 1]), np.array([3]))},  # row past the last position
        {"targets": PromptTargets(np.array([0]), np.array([257]))},
        {"targets": PromptTargets(np.array([], np.int64), np.array([], np.int64))},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidModelInput):
            sampler.sample(PROMPT, max_tokens=1, **kwargs)  # type: ignore[arg-type]


# ---- end-of-text and stop=[] ------------------------------------------------------------------------

def _ends_text_often() -> Sampler:
    """A sampler whose unembedding adapter raises end-of-text where the hidden state points one way: about
    half of 48-token samples meet it (the base models alone almost never end text: END_OF_TEXT_LOGIT_OFFSET)."""
    trainer = LoraTrainer("tiny-byte", rank=1, seed=0, train_mlp=False, train_attn=False, train_unembed=True)
    state = trainer.state(with_optimizer=False)
    direction = np.random.default_rng(0).standard_normal((64, 1))
    b = np.zeros((1, 257))
    b[0, trainer.info.eos_token_id] = 6.0 / 32  # x LORA_ALPHA / rank = a logit shift of 6 * (h . direction)
    return Sampler("tiny-byte", {**state, "lora.unembed.a": direction / np.linalg.norm(direction),
                                 "lora.unembed.b": b})


def test_end_of_text_stops_by_default_and_stop_empty_list_turns_it_off() -> None:
    sampler = _ends_text_often()
    eos = sampler.info.eos_token_id
    default = sampler.sample(PROMPT, num_samples=64, max_tokens=48, seed=3).sequences
    stopped = [s for s in default if s.stop_reason == "stop"]
    assert 0 < len(stopped) < 64
    for sequence in default:
        assert eos not in sequence.tokens[:-1]
        assert (sequence.tokens[-1] == eos) == (sequence.stop_reason == "stop")
        if sequence.stop_reason == "length":
            assert len(sequence.tokens) == 48
    unstopped = sampler.sample(PROMPT, num_samples=64, max_tokens=48, seed=3, stop=[]).sequences
    assert all(s.stop_reason == "length" and len(s.tokens) == 48 for s in unstopped)
    assert any(eos in s.tokens[:-1] for s in unstopped)  # end-of-text was generated and did not stop it
    # stops given: these and end-of-text
    listed = sampler.sample(PROMPT, num_samples=64, max_tokens=48, seed=3, stop=["zz-never"]).sequences
    assert [s.tokens for s in listed] == [s.tokens for s in default]


def test_the_base_models_almost_never_end_text_by_themselves() -> None:
    for base in ("tiny-byte", "tiny-bpe"):
        sampler = Sampler(base)
        out = sampler.sample(PROMPT if base == "tiny-byte" else [5, 6, 7], num_samples=128, max_tokens=32, seed=0,
                             stop=[], topk_sample_logprobs=1)
        assert all(sampler.info.eos_token_id not in s.tokens for s in out.sequences)
        distribution = sampler.sample([5, 6, 7, 8], max_tokens=0, prompt_logprobs=True,
                                      topk_prompt_logprobs=sampler.info.vocab_size).topk_prompt_logprobs
        assert distribution is not None and distribution[-1] is not None
        assert dict(distribution[-1])[sampler.info.eos_token_id] < -10


# ---- prefix cache -------------------------------------------------------------------------------------

def test_the_same_prompt_twice_hits_the_cache_and_gives_the_same_results() -> None:
    cache = PrefixCache()
    trainer = _trainer()
    sampler = Sampler.from_trainer(trainer, prefix_cache=cache)
    uncached = Sampler.from_trainer(trainer)
    first = sampler.sample(LONG, num_samples=3, max_tokens=8, seed=4, topk_sample_logprobs=2)
    second = sampler.sample(LONG, num_samples=3, max_tokens=8, seed=4, topk_sample_logprobs=2)
    reference = uncached.sample(LONG, num_samples=3, max_tokens=8, seed=4, topk_sample_logprobs=2)
    block = cache.block_tokens
    assert first.prompt_cache_hit_tokens == 0 and reference.prompt_cache_hit_tokens == 0
    # every whole block before the last prompt token (which always runs, for the next token's logits)
    assert second.prompt_cache_hit_tokens == (len(LONG) - 1) // block * block > 0
    assert [s.tokens for s in second.sequences] == [s.tokens for s in first.sequences] == \
        [s.tokens for s in reference.sequences]
    for cached, plain in zip(second.sequences, reference.sequences, strict=True):
        np.testing.assert_allclose(cached.logprobs, plain.logprobs, atol=1e-5)
    stats = cache.stats()
    assert stats.hit_tokens == second.prompt_cache_hit_tokens and stats.blocks == len(LONG) // block


def test_a_shared_prefix_hits_and_prompt_outputs_limit_the_hit() -> None:
    cache = PrefixCache(block_tokens=8)
    trainer = _trainer()
    sampler = Sampler.from_trainer(trainer, prefix_cache=cache)
    sampler.sample(LONG, max_tokens=1)
    other = LONG[:100] + PROMPT  # the first 100 tokens are LONG's
    hit = sampler.sample(other, max_tokens=1, prompt_logprobs=True, prompt_logprobs_last_n=len(PROMPT))
    assert hit.prompt_cache_hit_tokens == 96  # whole blocks of the shared part
    full = _distributions(trainer, other)
    assert hit.prompt_logprobs is not None
    expected = [full[i - 1, other[i]] for i in range(100, len(other))]
    np.testing.assert_allclose(hit.prompt_logprobs[100:], expected, atol=2e-4)  # type: ignore[arg-type]
    # every prompt logprob asked: the prompt runs whole (nothing is read from the cache)
    assert sampler.sample(LONG, max_tokens=1, prompt_logprobs=True).prompt_cache_hit_tokens == 0
    assert sampler.sample(LONG, max_tokens=1, prompt_alt_tokens_k=1).prompt_cache_hit_tokens == 0
    # the last 20 scored: the hit stops before the first scored position's logits
    last = sampler.sample(LONG, max_tokens=1, prompt_logprobs=True, prompt_logprobs_last_n=20)
    assert last.prompt_cache_hit_tokens == (len(LONG) - 21) // 8 * 8
    # a target at row 40 (prompt position 41): rows 0..39 may come from the cache
    target = sampler.sample(LONG, max_tokens=1, targets=PromptTargets(np.array([40, 60]), np.array([3, 4])))
    assert target.prompt_cache_hit_tokens == 40
    np.testing.assert_allclose(target.target_logprobs, _distributions(trainer, LONG)[[40, 60], [3, 4]], atol=2e-4)  # type: ignore[arg-type]


def test_new_weights_never_read_the_old_weights_cache() -> None:
    cache = PrefixCache()
    trainer = _trainer()
    before = Sampler.from_trainer(trainer, prefix_cache=cache)
    before.sample(LONG, max_tokens=1)
    assert Sampler.from_trainer(trainer, prefix_cache=cache).sample(LONG, max_tokens=1).prompt_cache_hit_tokens > 0
    trainer.forward_backward([DatumArrays.next_token(LONG[:64])], "cross_entropy")
    trainer.optim_step(lr=0.05)
    after = Sampler.from_trainer(trainer, prefix_cache=cache)
    assert after.weights_version != before.weights_version
    first = after.sample(LONG, max_tokens=1, prompt_logprobs=True)
    assert first.prompt_cache_hit_tokens == 0
    assert after.sample(LONG, max_tokens=1).prompt_cache_hit_tokens > 0
    # the base model and the adapted one are different weights too
    assert Sampler("tiny-byte", prefix_cache=cache).sample(LONG, max_tokens=1).prompt_cache_hit_tokens == 0
    # the old version's blocks can be freed at once
    blocks = cache.stats().blocks
    dropped = cache.invalidate(before.weights_version)
    assert dropped == len(LONG) // cache.block_tokens and cache.stats().blocks == blocks - dropped
    assert before.sample(LONG, max_tokens=1).prompt_cache_hit_tokens == 0


def test_the_cache_is_bounded_and_evicts_the_least_recently_used_prefix_from_its_end() -> None:
    block_bytes = 2 * 2 * 64 * 8 * 4  # layers x (keys, values) x d_model x 8 tokens x float32
    cache = PrefixCache(max_bytes=10 * block_bytes, block_tokens=8)
    sampler = Sampler("tiny-byte", prefix_cache=cache)
    prompts = [[65 + i] * 41 for i in range(3)]  # 5 whole blocks each
    for prompt in prompts:
        sampler.sample(prompt, max_tokens=0)
    stats = cache.stats()
    assert stats.blocks == 10 and stats.bytes == 10 * block_bytes and stats.evicted_blocks == 5
    assert sampler.sample(prompts[0], max_tokens=0).prompt_cache_hit_tokens == 0  # the oldest went first
    # a hit keeps a prompt; the one not used since then loses its last blocks first
    assert sampler.sample(prompts[2], max_tokens=0).prompt_cache_hit_tokens == 40
    sampler.sample([90] * 17, max_tokens=0)  # two more blocks
    assert sampler.sample(prompts[2], max_tokens=0).prompt_cache_hit_tokens == 40
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(max_bytes=0)


def test_a_cache_hit_makes_the_prefill_measurably_cheaper() -> None:
    prompt = (LONG * 2)[:500]
    cache = PrefixCache()
    sampler = Sampler("tiny-byte", prefix_cache=cache)
    plain = Sampler("tiny-byte")
    sampler.sample(prompt, max_tokens=1)

    def best_of(run: Sampler, times: int = 5) -> float:
        best = float("inf")
        for _ in range(times):
            start = time.perf_counter()
            out = run.sample(prompt, max_tokens=1)
            best = min(best, time.perf_counter() - start)
        assert out.prompt_cache_hit_tokens == (496 if run is sampler else 0)
        return best

    uncached, cached = best_of(plain), best_of(sampler)
    assert cached < uncached / 3, (cached, uncached)  # 4 positions run instead of 500
