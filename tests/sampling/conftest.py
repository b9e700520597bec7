"""Shared helpers of the S6 sampling tests: a local service with chosen protocol flags, and a client of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService

PROMPT = list(b"the cat ")
TEXT = list(b"the cat sat on the mat. the cat sat on the mat.")


@contextmanager
def service_with(flags: dict[str, Any] | None = None, **options: Any) -> Iterator[LocalService]:
    with LocalService(protocol_flags=flags or {}, **options) as service:
        yield service


def config(service: LocalService, protocol: str = "0.38", **overrides: Any) -> Config:
    values: dict[str, Any] = dict(
        api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False, protocol=protocol,
        retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
        poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=20.0)
    values.update(overrides)
    return Config(**values)


def done(value: Any) -> Any:
    """A factory call's client (0.38 call style returns a future of it)."""
    return value.result(timeout=30) if hasattr(value, "result") else value


def train_step(training: Any, learning_rate: float = 0.05) -> None:
    datum = tinker.Datum(model_input=tinker.ModelInput.from_ints(TEXT[:-1]),
                         loss_fn_inputs={"target_tokens": TEXT[1:], "weights": [1.0] * (len(TEXT) - 1)})
    training.forward_backward([datum], "cross_entropy").result(timeout=30)
    training.optim_step(tinker.AdamParams(learning_rate=learning_rate)).result(timeout=30)


def sample_tokens(sampler: Any, max_tokens: int = 12, seed: int = 5) -> tuple[list[int], list[float]]:
    params = tinker.SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=seed)
    sequence = sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, params).result(timeout=30).sequences[0]
    return list(sequence.tokens), [float(x) for x in sequence.logprobs or []]
