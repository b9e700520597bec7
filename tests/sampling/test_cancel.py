"""``cancel_future`` (FEATURES S6): a sample nobody waits for anymore stops on the server, over real HTTP.

The service counts the tokens it generates (``sample_counters_of(service.stats)``): a cancelled sample stops at
its next token, a queued one never starts, and the caller's cancelled future ends typed at once.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import pytest

import tinker_actors as tinker
from tests.sampling.conftest import PROMPT, config, done, service_with
from tinker_actors.errors import ClientStoppedError
from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.local.engine.sample_work import sample_counters_of

LONG = 400  # tokens per sequence of the long sample (tiny-byte: well inside its context window)
SEQUENCES = 4
CANCEL_FLAGS = {"sample_cancel_enabled": True, "sample_cancel_max_batch_size": 2}
# a loaded sampler (the slow-sampling fault): a long sample runs 0.8 s or more, so the cancel surely finds it
# running however fast the machine is
SECONDS_PER_TOKEN = 0.002


def _long_params(seed: int = 9) -> tinker.SamplingParams:
    return tinker.SamplingParams(max_tokens=LONG, temperature=1.0, seed=seed, stop=[])


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the service"
        time.sleep(0.02)


def _tokens(service: LocalService) -> int:
    return sample_counters_of(service.stats).snapshot()["tokens_generated"]


def _settled(service: LocalService) -> int:
    """The token count once it stopped moving (the service finished or stopped its work)."""
    last = -1
    while True:
        now = _tokens(service)
        if now == last:
            return now
        last = now
        time.sleep(0.3)


def _sampler(client: Any) -> Any:
    return done(client.create_sampling_client(base_model="tiny-byte"))


def test_a_cancelled_running_sample_stops_at_its_next_token() -> None:
    with service_with(CANCEL_FLAGS) as service, tinker.ServiceClient(config=config(service)) as client:
        service.faults.slow_sampling(SECONDS_PER_TOKEN)
        sampler = _sampler(client)
        future = sampler.sample(tinker.ModelInput.from_ints(PROMPT), SEQUENCES, _long_params())
        _wait_until(lambda: _tokens(service) > 0)  # it is running
        started = time.monotonic()
        assert future.cancel()
        with pytest.raises(ClientStoppedError, match="cancelled"):  # typed, at once
            future.result(timeout=5)
        assert time.monotonic() - started < 2.0  # the caller is not held by the server's work
        _wait_until(lambda: sample_counters_of(service.stats).snapshot()["cancelled"] == 1)
        generated = _settled(service)
        assert generated < SEQUENCES * LONG // 2, generated  # stopped long before the end
        assert service.request_counts()["endpoints"]["cancel_future"]["received"] == 1


def test_a_cancelled_queued_sample_never_runs() -> None:
    # one model worker: the second sample waits in the queue while the first runs
    with service_with(CANCEL_FLAGS, workers=1) as service, tinker.ServiceClient(config=config(service)) as client:
        service.faults.slow_sampling(SECONDS_PER_TOKEN)  # the first sample holds the worker 0.8 s or more
        sampler = _sampler(client)
        first = sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, _long_params(1))
        _wait_until(lambda: _tokens(service) > 0)
        queued = sampler.sample(tinker.ModelInput.from_ints(PROMPT), SEQUENCES, _long_params(2))
        _wait_until(lambda: service.request_counts()["endpoints"]["asample"]["received"] == 2)
        assert queued.cancel()
        _wait_until(lambda: sample_counters_of(service.stats).snapshot()["cancelled"] == 1)
        assert len(first.result(timeout=60).sequences[0].tokens) == LONG
        assert _settled(service) == LONG  # only the first sample's tokens: the queued one never started
        assert service.request_counts()["endpoints"]["asample"]["failed"] == 1  # answered as cancelled


def test_a_dropped_future_is_cancelled_on_the_server_too() -> None:
    with service_with(CANCEL_FLAGS) as service, tinker.ServiceClient(config=config(service)) as client:
        service.faults.slow_sampling(SECONDS_PER_TOKEN)
        sampler = _sampler(client)
        future = sampler.sample(tinker.ModelInput.from_ints(PROMPT), SEQUENCES, _long_params())
        _wait_until(lambda: _tokens(service) > 0)  # it is running
        del future  # nobody waits for it anymore
        gc.collect()
        _wait_until(lambda: sample_counters_of(service.stats).snapshot()["cancelled"] == 1)
        assert _settled(service) < SEQUENCES * LONG // 2


def test_without_the_flag_nothing_is_sent_and_the_work_runs_to_its_end() -> None:
    with service_with({}) as service, tinker.ServiceClient(config=config(service)) as client:
        sampler = _sampler(client)
        future = sampler.sample(tinker.ModelInput.from_ints(PROMPT), SEQUENCES, _long_params())
        _wait_until(lambda: _tokens(service) > 0)
        assert future.cancel()
        _wait_until(lambda: service.request_counts()["endpoints"]["asample"]["executed"] == 1, timeout=120)
        assert _tokens(service) == SEQUENCES * LONG
        assert "cancel_future" not in service.request_counts()["endpoints"]


def test_cancel_future_is_idempotent_and_only_the_owners(tmp_path: Any) -> None:
    """A finished or unknown id changes nothing; another user's sample is unknown to the caller."""
    import httpx

    with service_with(CANCEL_FLAGS) as service:
        headers = {"X-API-Key": service.api_key}
        with httpx.Client(base_url=service.base_url, headers=headers, timeout=10) as http:
            answer = http.post("/api/v1/cancel_future", json={"request_id": "req-unknown"})
            assert answer.status_code == 200 and answer.json()["cancelled"] is False
            assert http.post("/api/v1/cancel_future", json={}).status_code == 400


def test_the_slow_sampling_fault_paces_every_step_and_turns_off() -> None:
    with service_with({}) as service, tinker.ServiceClient(config=config(service)) as client:
        sampler = _sampler(client)
        params = tinker.SamplingParams(max_tokens=50, temperature=1.0, seed=1, stop=[])
        service.faults.slow_sampling(0.02)
        started = time.monotonic()
        assert len(sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, params).result(timeout=60)
                   .sequences[0].tokens) == 50
        assert time.monotonic() - started >= 50 * 0.02  # one pause per generated token
        service.faults.slow_sampling(0)
        assert service.faults.seconds_per_token == 0
        with pytest.raises(ValueError, match="seconds_per_token"):
            service.faults.slow_sampling(-1)


def test_a_sample_cancelled_while_its_request_is_out_is_cancelled_on_the_server_once_it_is_accepted() -> None:
    with service_with(CANCEL_FLAGS) as service, tinker.ServiceClient(config=config(service)) as client:
        service.faults.slow_sampling(SECONDS_PER_TOKEN)
        sampler = _sampler(client)
        service.faults.add(FaultRule(endpoint="asample", action=FaultAction.DELAY, delay_s=1.0, times=1))
        future = sampler.sample(tinker.ModelInput.from_ints(PROMPT), SEQUENCES, _long_params())
        _wait_until(lambda: service.request_counts()["endpoints"].get("asample", {}).get("received", 0) == 1)
        assert future.cancel()  # the POST is still held by the service: the client knows no request id yet
        with pytest.raises(ClientStoppedError, match="cancelled"):
            future.result(timeout=5)
        # once the service answered the POST, the client names the sample to cancel_future
        _wait_until(lambda: sample_counters_of(service.stats).snapshot()["cancelled"] == 1)
        assert service.request_counts()["endpoints"]["cancel_future"]["received"] == 1
        assert _settled(service) < SEQUENCES * LONG // 2
