"""Samples beyond the start limit (2 x max_connections) wait in the sampling actor.

They all complete in turn; when the client closes, they fail with NotSentError and were never sent.
"""

from __future__ import annotations

import time

import pytest

import tinker_actors as tinker
from tinker_actors.config import Config
from tinker_actors.local import FaultAction, FaultRule, LocalService

PROMPT = tinker.ModelInput.from_ints([72, 101, 108, 108, 111])
PARAMS = tinker.SamplingParams(max_tokens=2)


def asample_received(service: LocalService) -> int:
    return int(service.stats.snapshot()["endpoints"].get("asample", {}).get("received", 0))


def test_samples_beyond_the_start_limit_wait_and_then_all_complete(client: tinker.ServiceClient) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte",
                                            retry_config=tinker.RetryConfig(max_connections=2)).result()
    futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(30)]
    results = [future.result(timeout=30) for future in futures]
    assert all(len(result.sequences) == 1 for result in results)


def test_queued_samples_are_never_sent_and_fail_not_sent_when_the_client_closes(
        service: LocalService, fast_config: Config) -> None:
    service.faults.clear()
    service.faults.add(FaultRule(endpoint="asample", action=FaultAction.NEVER_COMPLETE))
    try:
        before = asample_received(service)
        with tinker.ServiceClient(config=fast_config) as client:
            sampler = client.create_sampling_client(base_model="tiny-byte",
                                                    retry_config=tinker.RetryConfig(max_connections=2)).result()
            futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(12)]
            deadline = time.monotonic() + 10
            while asample_received(service) - before < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # a third submission, if the limit leaked, would arrive now
            assert asample_received(service) - before == 2
            assert not any(future.done() for future in futures)
        for future in futures[4:]:  # beyond 2 x max_connections: queued in the actor, never started
            with pytest.raises(tinker.NotSentError):
                future.result(timeout=10)
        for future in futures[:4]:
            with pytest.raises(tinker.ClientStoppedError):
                future.result(timeout=10)
        assert asample_received(service) - before == 2
    finally:
        service.faults.clear()
