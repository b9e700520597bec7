"""Client methods code written for the official SDK 0.6.3 calls, against the local service: the queue-state
hook, get_telemetry, create_sampling_client_async, save_weights_and_get_sampling_client_submit and
SamplingClient.create."""

from __future__ import annotations

import asyncio

import pytest
import structlog

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.lib.api_future_impl import QueueState, QueueStateObserver
from tinker_actors.local import FaultRule, LocalService

TEXT = list(b"the official names answer as they always did. " * 2)
PROMPT = tinker.ModelInput.from_ints(TEXT[:6])
PARAMS = tinker.SamplingParams(max_tokens=3)


def test_training_queue_states_reach_on_queue_state_change(client: tinker.ServiceClient,
                                                           service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    assert isinstance(training, QueueStateObserver)
    seen: list[QueueState] = []
    training.on_queue_state_change = seen.append  # type: ignore[method-assign]
    service.faults.add(FaultRule(endpoint="retrieve_future", status=408, queue_state="paused_capacity", times=3))
    result = training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)
    assert result.metrics["loss:sum"] > 0
    assert seen[:3] == [QueueState.PAUSED_CAPACITY] * 3
    assert all(isinstance(state, QueueState) for state in seen)


def test_sampling_queue_states_reach_the_callback_and_a_failing_callback_is_logged_and_harmless(
        client: tinker.ServiceClient, service: LocalService) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte").result()
    assert isinstance(sampler, QueueStateObserver)
    seen: list[QueueState] = []

    def record_then_fail(state: QueueState) -> None:
        seen.append(state)
        raise RuntimeError("a user's callback failed")

    sampler.on_queue_state_change = record_then_fail  # type: ignore[method-assign]
    service.faults.add(FaultRule(endpoint="retrieve_future", status=408, queue_state="paused_rate_limit", times=2,
                                 request_type="Sample"))
    with structlog.testing.capture_logs() as logs:
        response = sampler.sample(PROMPT, 1, PARAMS).result(30)
    assert len(response.sequences[0].tokens) == 3
    assert any(entry["event"] == "queue.callback_failed" for entry in logs)
    assert seen[:2] == [QueueState.PAUSED_RATE_LIMIT] * 2 and seen[0] == "paused_rate_limit"


def test_unknown_queue_states_are_unknown() -> None:
    assert QueueState.parse("paused_for_lunch") is QueueState.UNKNOWN
    assert QueueState.parse("active") is QueueState.ACTIVE


def test_get_telemetry_is_none_when_disabled_and_the_session_telemetry_otherwise(
        client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    sampler = client.create_sampling_client(base_model="tiny-byte").result()
    for handle in (client, training, sampler, client.create_rest_client()):
        assert handle.get_telemetry() is None
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key, telemetry_enabled=True) as svc:
        telemetry = svc.get_telemetry()
        assert telemetry is not None and telemetry is svc.telemetry and telemetry.enabled
        assert svc.create_sampling_client(base_model="tiny-byte").result().get_telemetry() is telemetry
        assert svc.create_rest_client().get_telemetry() is telemetry


def test_training_client_creates_sampling_clients_the_official_ways(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    path = training.save_weights_for_sampler("official-names").result(30).path

    sampler = asyncio.run(training.create_sampling_client_async(path))
    assert isinstance(sampler, tinker.SamplingClient) and sampler.base_model == "tiny-byte"
    assert len(sampler.sample(PROMPT, 1, PARAMS).result(30).sequences[0].tokens) == 3

    submitted = training.save_weights_and_get_sampling_client_submit()
    assert isinstance(submitted, tinker.APIFuture)
    ephemeral = submitted.result(30)
    assert len(ephemeral.sample(PROMPT, 1, PARAMS).result(30).sequences[0].tokens) == 3


def test_sampling_client_create_opens_or_joins_a_session(client: tinker.ServiceClient) -> None:
    created = tinker.SamplingClient.create(client, base_model="tiny-byte")
    assert isinstance(created, tinker.APIFuture)
    first = created.result(30)
    assert first.base_model == "tiny-byte"

    joined = tinker.SamplingClient.create(client, sampling_session_id=first.sampling_session_id,
                                          base_model="tiny-byte").result(5)
    assert joined.sampling_session_id == first.sampling_session_id
    both = [first.sample(PROMPT, 1, PARAMS), joined.sample(PROMPT, 1, PARAMS)]
    assert all(len(f.result(30).sequences[0].tokens) == 3 for f in both)

    with pytest.raises(tinker.InvalidInputError, match="takes the ServiceClient"):
        tinker.SamplingClient.create(object(), base_model="tiny-byte")  # type: ignore[arg-type]
    with pytest.raises(tinker.InvalidInputError):
        tinker.SamplingClient.create(client)  # neither a model nor a session
