"""Functions that spawned worker processes run on an unpickled SamplingClient (importable by the child)."""

from __future__ import annotations

import os

import tinker_actors as tinker


def sample_tokens(sampler: tinker.SamplingClient, prompt: list[int]) -> tuple[int, list[int]]:
    """The worker's pid and the tokens of one sample (an error goes back to the parent, pickled)."""
    params = tinker.SamplingParams(max_tokens=3, seed=1)
    response = sampler.sample(tinker.ModelInput.from_ints(prompt), 1, params).result(timeout=60)
    return os.getpid(), response.sequences[0].tokens
