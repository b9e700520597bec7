"""The rest of the fault matrix: 408 queue states, 410, dropped connections, slow answers, a service restart.

Each case ends with a correct result or a typed error, within seconds (pytest-timeout guards against hangs).
"""

from __future__ import annotations

import time

import pytest
import structlog

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.config import Config, PollBackoff, RetryPolicy, Timeouts
from tinker_actors.local import FaultAction, FaultRule, LocalService

TEXT = list(b"every fault has an answer, and every answer has a type. " * 2)
PROMPT = tinker.ModelInput.from_ints(TEXT[:6])


def test_408_queue_states_are_reported_once_per_period(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=408, queue_state="paused_capacity", times=5))
    with structlog.testing.capture_logs() as logs:
        result = training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)
    assert result.metrics["loss:sum"] > 0
    paused = [entry for entry in logs if entry["event"] == "queue.paused"]
    assert len(paused) == 1 and paused[0]["state"] == "paused_capacity"


def test_410_on_a_training_future_is_typed(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=410, times=1))
    with pytest.raises(tinker.APIStatusError) as info:
        training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)
    assert info.value.status_code == 410


def test_410_on_a_sample_is_resubmitted(client: tinker.ServiceClient, service: LocalService) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte",
                                            retry_config=tinker.RetryConfig(retry_delay_base=0.01)).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=410, times=1, request_type="Sample"))
    response = sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=3)).result(30)
    assert len(response.sequences[0].tokens) == 3


def test_410_forever_on_samples_ends_with_a_typed_error(client: tinker.ServiceClient, service: LocalService) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
        retry_delay_base=0.01, retry_delay_max=0.02, max_retries=3)).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=410, request_type="Sample"))
    with pytest.raises(tinker.APIStatusError):
        sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=3)).result(30)


@pytest.mark.parametrize("endpoint", ["forward_backward", "asample", "retrieve_future"])
def test_dropped_connections_are_retried(client: tinker.ServiceClient, service: LocalService, endpoint: str) -> None:
    service.faults.add(FaultRule(endpoint=endpoint, action=FaultAction.DROP, times=2))
    if endpoint == "asample":
        sampler = client.create_sampling_client(base_model="tiny-byte",
                                                retry_config=tinker.RetryConfig(retry_delay_base=0.01)).result()
        assert sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30).sequences
    else:
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        assert training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30).metrics


def test_slow_answers_past_the_timeout_end_typed(service: LocalService) -> None:
    config = Config(api_key="tml-k", base_url=service.base_url, telemetry_enabled=False,
                    timeouts=Timeouts(default=0.3), retry=RetryPolicy(max_retries=2, base_delay=0.01, deadline=3.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05))
    with tinker.ServiceClient(config=config) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.DELAY, delay_s=1.0))
        started = time.monotonic()
        with pytest.raises(tinker.APITimeoutError):
            training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)
        assert time.monotonic() - started < 5
        service.faults.clear()


def test_service_restart_mid_run_ends_every_wait(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    saved = training.save_state("before-restart").result(30)
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE, times=1))
    pending = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    time.sleep(0.2)
    service.restart()
    with pytest.raises(tinker.TinkerError):  # the server forgot the request: a typed error, not a hang
        pending.result(30)
    # The checkpoint survived the restart (same data dir): a new client resumes from it.
    resumed = client.create_training_client_from_state(saved.path).result()
    assert resumed.forward([datum(TEXT[:20])], "cross_entropy").result(30).metrics["loss:sum"] > 0


def test_retryable_exceptions_of_retry_config_resubmit(client: tinker.ServiceClient, service: LocalService) -> None:
    """The official SDK's RetryConfig.retryable_exceptions works: a failed sample is resubmitted."""
    config = tinker.RetryConfig(retry_delay_base=0.01, retryable_exceptions=(tinker.RequestFailedError,))
    sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=config).result()
    failure = {"error": "transient sampler failure", "category": "server"}
    service.faults.add(FaultRule(endpoint="retrieve_future", status=200, body=failure, times=1, request_type="Sample"))
    assert sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30).sequences
    plain = client.create_sampling_client(base_model="tiny-byte").result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=200, body=failure, times=1, request_type="Sample"))
    with pytest.raises(tinker.RequestFailedError):
        plain.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30)


def test_a_429_pauses_every_sampling_client_of_the_key(client: tinker.ServiceClient, service: LocalService) -> None:
    """S4: the 429 backoff is shared per (service, API key), not per client."""
    config = tinker.RetryConfig(rate_limit_backoff=0.6)
    first = client.create_sampling_client(base_model="tiny-byte", retry_config=config).result()
    second = client.create_sampling_client(base_model="tiny-byte", retry_config=config).result()
    first.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)).result(30)  # warm both paths up
    second.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)).result(30)
    service.faults.add(FaultRule(endpoint="asample", status=429, times=1))
    limited = first.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1))
    time.sleep(0.15)  # the 429 has been answered; the key is now backing off
    started = time.monotonic()
    second.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)).result(30)
    waited = time.monotonic() - started
    assert limited.result(30).sequences
    assert waited >= 0.3, f"the other client did not wait ({waited:.2f} s)"


def test_byte_budget_limits_request_bytes_in_flight(client: tinker.ServiceClient, service: LocalService) -> None:
    """S4: with a budget smaller than one request, sample submissions go one at a time."""
    def timed(config: tinker.RetryConfig) -> float:
        sampler = client.create_sampling_client(base_model="tiny-byte", retry_config=config).result()
        service.faults.add(FaultRule(endpoint="asample", action=FaultAction.DELAY, delay_s=0.3, times=3))
        started = time.monotonic()
        futures = [sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=1)) for _ in range(3)]
        for future in futures:
            future.result(30)
        service.faults.clear()
        return time.monotonic() - started

    assert timed(tinker.RetryConfig(max_bytes_in_flight=1)) >= 0.85  # 3 x 0.3 s, one after another
    assert timed(tinker.RetryConfig()) < 0.85  # the default budget lets them overlap
