"""Sampler: seeds, greedy decoding, top-k/top-p, stops, prompt logprobs, context window, adapters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinker_actors.local.model import (
    ContextWindowExceeded,
    DatumArrays,
    IncompatibleCheckpoint,
    InvalidModelInput,
    LoraTrainer,
    Sampler,
    load_tokenizer,
)

from .helpers import randomize_lora

REPO = Path(__file__).resolve().parents[3]
PROMPT = load_tokenizer("tiny-byte").encode("Q: What is 5 plus 2?\nA:").ids


def _trained_trainer(base: str = "tiny-byte") -> LoraTrainer:
    trainer = LoraTrainer(base, rank=8, seed=1)
    randomize_lora(trainer, 21, b_std=0.05)  # an adapter that visibly changes the model
    return trainer


def _next_token_distribution(sampler: Sampler, prompt: list[int]) -> dict[int, float]:
    """The model's full next-token distribution after `prompt`, read through top-k prompt logprobs."""
    vocab = sampler.info.vocab_size
    out = sampler.sample([*prompt, 0], max_tokens=0, topk_prompt_logprobs=vocab)
    assert out.topk_prompt_logprobs is not None
    last = out.topk_prompt_logprobs[-1]
    assert last is not None and len(last) == vocab
    return {token: float(np.exp(logprob)) for token, logprob in last}


def _forward_logprobs(trainer: LoraTrainer, tokens: list[int]) -> np.ndarray:
    return trainer.forward([DatumArrays.next_token(tokens)], "cross_entropy").outputs[0]["logprobs"]


def test_same_seed_same_output_and_different_seeds_differ() -> None:
    sampler = Sampler("tiny-byte")
    first = sampler.sample(PROMPT, num_samples=3, max_tokens=20, seed=42)
    second = sampler.sample(PROMPT, num_samples=3, max_tokens=20, seed=42)
    other = sampler.sample(PROMPT, num_samples=3, max_tokens=20, seed=43)
    assert first == second
    assert [s.tokens for s in first.sequences] != [s.tokens for s in other.sequences]
    assert len({tuple(s.tokens) for s in first.sequences}) > 1  # samples of one call differ from each other


_SAMPLE_SCRIPT = """
import json, sys
from tinker_actors.local.model import Sampler
prompt = json.loads(sys.argv[1])
out = Sampler("tiny-bpe").sample(prompt, num_samples=2, max_tokens=16, seed=7, top_p=0.9, temperature=0.8)
print(json.dumps([s.tokens for s in out.sequences]))
"""


def test_seeded_sampling_is_reproducible_across_processes() -> None:
    prompt = load_tokenizer("tiny-bpe").encode("The river").ids

    def run() -> list[list[int]]:
        result = subprocess.run(
            [sys.executable, "-c", _SAMPLE_SCRIPT, json.dumps(prompt)],
            capture_output=True, text=True, check=True, timeout=60, cwd=REPO,
        )
        tokens: list[list[int]] = json.loads(result.stdout)
        return tokens

    here = Sampler("tiny-bpe").sample(prompt, num_samples=2, max_tokens=16, seed=7, top_p=0.9, temperature=0.8)
    assert run() == [s.tokens for s in here.sequences] == run()


def test_generated_logprobs_equal_the_trainers_forward_logprobs() -> None:
    trainer = _trained_trainer()
    sampler = Sampler.from_trainer(trainer)
    out = sampler.sample(PROMPT, num_samples=2, max_tokens=12, seed=3)
    for seq in out.sequences:
        assert len(seq.logprobs) == len(seq.tokens) == 12
        assert seq.stop_reason == "length"
        forward = _forward_logprobs(trainer, PROMPT + seq.tokens)
        np.testing.assert_allclose(seq.logprobs, forward[len(PROMPT) - 1 :], atol=2e-4)


def test_prompt_logprobs_equal_forward_logprobs_and_topk_is_consistent() -> None:
    trainer = _trained_trainer("tiny-bpe")
    sampler = Sampler.from_trainer(trainer)
    prompt = load_tokenizer("tiny-bpe").encode("How a map is made: a map is a promise.").ids
    out = sampler.sample(prompt, max_tokens=1, prompt_logprobs=True, topk_prompt_logprobs=3, seed=0)
    assert out.prompt_logprobs is not None and out.topk_prompt_logprobs is not None
    assert len(out.prompt_logprobs) == len(out.topk_prompt_logprobs) == len(prompt)
    assert out.prompt_logprobs[0] is None and out.topk_prompt_logprobs[0] is None
    np.testing.assert_allclose(out.prompt_logprobs[1:], _forward_logprobs(trainer, prompt), atol=2e-4)  # type: ignore[arg-type]
    for actual, top in zip(out.prompt_logprobs[1:], out.topk_prompt_logprobs[1:], strict=True):
        assert top is not None and actual is not None and len(top) == 3
        values = [lp for _, lp in top]
        assert values == sorted(values, reverse=True)
        assert actual <= values[0] + 1e-6
        assert all(isinstance(tok, int) for tok, _ in top)
    # not requested: not returned
    plain = sampler.sample(prompt, max_tokens=1, seed=0)
    assert plain.prompt_logprobs is None and plain.topk_prompt_logprobs is None


def test_temperature_zero_is_greedy() -> None:
    sampler = Sampler.from_trainer(_trained_trainer())
    out = sampler.sample(PROMPT, num_samples=3, max_tokens=10, temperature=0.0, seed=None)
    tokens = out.sequences[0].tokens
    assert all(s.tokens == tokens for s in out.sequences)
    context = list(PROMPT)
    for token in tokens:
        distribution = _next_token_distribution(sampler, context)
        assert token == max(distribution, key=lambda t: distribution[t])
        context.append(token)
    # top_k=1 at any temperature is greedy too
    assert sampler.sample(PROMPT, max_tokens=10, top_k=1, temperature=1.5, seed=9).sequences[0].tokens == tokens


def test_top_k_and_top_p_restrict_the_candidates() -> None:
    sampler = Sampler("tiny-byte")
    distribution = _next_token_distribution(sampler, PROMPT)
    ranked = sorted(distribution, key=lambda t: -distribution[t])

    top5 = sampler.sample(PROMPT, num_samples=300, max_tokens=1, top_k=5, seed=1)
    seen = {s.tokens[0] for s in top5.sequences}
    assert seen <= set(ranked[:5]) and len(seen) >= 3

    mass = np.cumsum([distribution[t] for t in ranked])
    nucleus_size = int(np.searchsorted(mass, 0.5) + 1)  # smallest prefix with mass >= 0.5
    assert nucleus_size >= 2
    top_p = sampler.sample(PROMPT, num_samples=300, max_tokens=1, top_p=0.5, seed=2)
    seen = {s.tokens[0] for s in top_p.sequences}
    assert seen <= set(ranked[:nucleus_size]) and len(seen) >= 2

    free = sampler.sample(PROMPT, num_samples=300, max_tokens=1, top_k=-1, seed=3)
    assert len({s.tokens[0] for s in free.sequences}) > nucleus_size


def test_unfiltered_sampling_follows_the_model_distribution() -> None:
    sampler = Sampler("tiny-byte")
    distribution = _next_token_distribution(sampler, PROMPT)
    count = 4000
    out = sampler.sample(PROMPT, num_samples=count, max_tokens=1, seed=5)
    tokens = np.array([s.tokens[0] for s in out.sequences])
    for token in sorted(distribution, key=lambda t: -distribution[t])[:3]:
        p = distribution[token]
        assert abs(np.mean(tokens == token) - p) < 5 * np.sqrt(p * (1 - p) / count)
    # the returned logprob is the model's own
    first = out.sequences[0]
    assert first.logprobs[0] == pytest.approx(np.log(distribution[first.tokens[0]]), abs=1e-5)


def test_stop_token_ids_end_a_sequence_after_the_stop_token() -> None:
    sampler = Sampler("tiny-byte")
    greedy = sampler.sample(PROMPT, max_tokens=30, temperature=0).sequences[0].tokens
    stop_token = greedy[4]
    first_hit = greedy.index(stop_token)
    out = sampler.sample(PROMPT, max_tokens=30, temperature=0, stop=[stop_token, 999])
    seq = out.sequences[0]
    assert seq.tokens == greedy[: first_hit + 1]
    assert seq.stop_reason == "stop"
    assert len(seq.logprobs) == len(seq.tokens)


def test_stop_strings_are_found_in_the_decoded_generation() -> None:
    sampler = Sampler("tiny-byte")
    decode = load_tokenizer("tiny-byte").decode
    greedy = sampler.sample(PROMPT, max_tokens=30, temperature=0).sequences[0].tokens
    text = decode(greedy)
    stop = text[6:8]
    expected = next(i for i in range(1, len(greedy) + 1) if stop in decode(greedy[:i]))
    for stop_arg in (stop, [stop, "never-there"]):
        seq = sampler.sample(PROMPT, max_tokens=30, temperature=0, stop=stop_arg).sequences[0]
        assert seq.tokens == greedy[:expected]
        assert seq.stop_reason == "stop"
    # a stop string that only occurs in the prompt does not stop anything
    assert "Q" in decode(PROMPT) and "Q" not in text
    assert sampler.sample(PROMPT, max_tokens=30, temperature=0, stop=["Q"]).sequences[0].stop_reason == "length"


def test_samples_that_stop_early_do_not_disturb_the_others() -> None:
    trainer = _trained_trainer()
    sampler = Sampler.from_trainer(trainer)
    stops = set(range(97, 110))  # a dozen common lowercase letters
    out = sampler.sample(PROMPT, num_samples=8, max_tokens=15, seed=11, stop=sorted(stops))
    reasons = {s.stop_reason for s in out.sequences}
    assert reasons == {"stop", "length"}  # the row-dropping path of the decoder ran
    ends = stops | {sampler.info.eos_token_id}  # end-of-text stops too (stop is not [])
    for seq in out.sequences:
        hits = [i for i, t in enumerate(seq.tokens) if t in ends]
        if seq.stop_reason == "stop":
            assert hits == [len(seq.tokens) - 1]
        else:
            assert hits == [] and len(seq.tokens) == 15
        forward = _forward_logprobs(trainer, PROMPT + seq.tokens)
        np.testing.assert_allclose(seq.logprobs, forward[len(PROMPT) - 1 :], atol=2e-4)


def test_max_tokens_and_the_context_window() -> None:
    sampler = Sampler("tiny-byte")
    window = sampler.info.context_window
    assert [len(s.tokens) for s in sampler.sample(PROMPT, num_samples=2, max_tokens=7, seed=0).sequences] == [7, 7]
    empty = sampler.sample(PROMPT, max_tokens=0)
    assert empty.sequences[0].tokens == [] and empty.sequences[0].stop_reason == "length"

    long_prompt = [65] * (window - 5)
    assert len(sampler.sample(long_prompt, max_tokens=5, seed=0).sequences[0].tokens) == 5
    with pytest.raises(ContextWindowExceeded, match=rf"{window - 5} \+ 6 > {window}"):
        sampler.sample(long_prompt, max_tokens=6)
    # None means "up to the context window" (capped by DEFAULT_MAX_TOKENS)
    assert len(sampler.sample(long_prompt, max_tokens=None, seed=0).sequences[0].tokens) == 5
    with pytest.raises(ContextWindowExceeded):
        sampler.sample([65] * window, max_tokens=None)
    assert issubclass(ContextWindowExceeded, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": []},
        {"prompt": [1, 257]},
        {"num_samples": 0},
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_k": -2},
        {"max_tokens": -1},
        {"stop": [""]},
        {"stop": ["a", 3]},
        {"topk_prompt_logprobs": -1},
    ],
)
def test_bad_sampling_arguments_are_user_errors(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"prompt": PROMPT, "max_tokens": 2, **kwargs}
    with pytest.raises(InvalidModelInput):
        Sampler("tiny-byte").sample(**arguments)  # type: ignore[arg-type]


def test_a_sampler_from_a_trainer_is_a_frozen_copy_and_uses_the_adapters() -> None:
    trainer = _trained_trainer()
    saved = trainer.state(with_optimizer=False)
    sampler = Sampler.from_trainer(trainer)
    adapted = sampler.sample(PROMPT, max_tokens=10, temperature=0, prompt_logprobs=True)
    plain = Sampler("tiny-byte").sample(PROMPT, max_tokens=10, temperature=0, prompt_logprobs=True)
    assert adapted.prompt_logprobs is not None and plain.prompt_logprobs is not None
    difference = np.array(adapted.prompt_logprobs[1:], float) - np.array(plain.prompt_logprobs[1:], float)
    assert np.max(np.abs(difference)) > 1e-2

    trainer.forward_backward([DatumArrays.next_token(PROMPT)], "cross_entropy")
    trainer.optim_step(lr=0.5)
    assert sampler.sample(PROMPT, max_tokens=10, temperature=0, prompt_logprobs=True) == adapted
    # a sampler checkpoint (state arrays) gives the same sampler
    from_state = Sampler("tiny-byte", saved)
    assert from_state.lora_config is not None and from_state.lora_config.rank == 8
    assert from_state.sample(PROMPT, max_tokens=10, temperature=0, prompt_logprobs=True) == adapted
    assert Sampler("tiny-byte").lora_config is None
    with pytest.raises(IncompatibleCheckpoint, match="tiny-byte"):
        Sampler("tiny-bpe", saved)


def test_sampling_64_tokens_gives_64_tokens_per_sample() -> None:
    # How fast is a claim for bench/bench_local_model.py, not a test (a loaded CI machine is not a benchmark).
    sampler = Sampler("tiny-bpe")
    out = sampler.sample(PROMPT, num_samples=4, max_tokens=64, seed=0)
    assert len(out.sequences) == 4 and all(len(s.tokens) == 64 for s in out.sequences)


def test_many_samples_are_generated_in_chunks_with_the_same_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinker_actors.local.model import sampler as sampler_module

    sampler = Sampler("tiny-byte")
    greedy = sampler.sample(PROMPT, num_samples=2, max_tokens=6, temperature=0)
    monkeypatch.setattr(sampler_module, "SAMPLES_PER_CHUNK", 3)
    chunked = sampler.sample(PROMPT, num_samples=7, max_tokens=6, temperature=0)
    assert [s.tokens for s in chunked.sequences] == [greedy.sequences[0].tokens] * 7
    seeded = sampler.sample(PROMPT, num_samples=7, max_tokens=6, seed=4, stop=[32])
    assert seeded == sampler.sample(PROMPT, num_samples=7, max_tokens=6, seed=4, stop=[32])
    assert len({tuple(s.tokens) for s in seeded.sequences}) > 3
