"""A pickled SamplingClient never carries the API key; the process that unpickles it uses its own credentials."""

from __future__ import annotations

import concurrent.futures
import copy
import gc
import multiprocessing
import os
import pickle
from collections.abc import Iterator

import pytest

import tinker_actors as tinker
from tests.clients.sampler_workers import sample_tokens
from tinker_actors.config import Config, MissingApiKeyError, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService

API_KEY = "tml-PICKLE-SECRET-5a8c1e9d0b"
PROMPT = list(b"the quick")


@pytest.fixture(scope="module")
def keyed_service() -> Iterator[LocalService]:
    """A local service that accepts only API_KEY."""
    with LocalService(api_key=API_KEY, long_poll_s=0.5) as svc:
        yield svc


def config_for(service: LocalService, api_key: str = API_KEY) -> Config:
    return Config(api_key=api_key, base_url=service.base_url, telemetry_enabled=False,
                  retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05, deadline=10.0),
                  poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=5.0)


@pytest.fixture
def owner(keyed_service: LocalService) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(config=config_for(keyed_service)) as service:
        yield service


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)


def test_the_pickle_holds_no_key(owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client(base_model="tiny-byte").result()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        dumped = pickle.dumps(sampler, protocol=protocol)
        assert API_KEY.encode() not in dumped
        assert API_KEY.encode("utf-16-le") not in dumped and API_KEY[::-1].encode() not in dumped
    assert sampler.sampling_session_id.encode() in pickle.dumps(sampler)  # what it does hold


@pytest.mark.usefixtures("no_env_key")
def test_unpickled_in_the_process_that_made_it_the_handle_reattaches_through_its_owner(
        owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client(base_model="tiny-byte").result()
    for clone in (pickle.loads(pickle.dumps(sampler)), copy.deepcopy(sampler)):
        assert clone.sampling_session_id == sampler.sampling_session_id
        result = clone.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2)).result(30)
        assert len(result.sequences[0].tokens) == 2


def test_without_a_key_in_the_environment_the_first_use_raises_a_typed_error(
        keyed_service: LocalService, no_env_key: None) -> None:
    with tinker.ServiceClient(config=config_for(keyed_service)) as service:
        dumped = pickle.dumps(service.create_sampling_client(base_model="tiny-byte").result())
    clone = pickle.loads(dumped)  # unpickling never fails: in a pool worker that would be an opaque crash
    assert clone.sampling_session_id
    for _ in range(2):  # each use tries again, and says again why it cannot
        with pytest.raises(MissingApiKeyError, match="TINKER_API_KEY") as caught:
            clone.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2))
        assert "never carries the key" in str(caught.value)
        assert pickle.loads(pickle.dumps(caught.value)).message == caught.value.message


def test_the_key_of_the_unpickling_process_environment_is_the_one_used(
        keyed_service: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    # The owner goes away without finishing its session (as an owner in another process would look from here):
    # closing it would finish the session, and the server drops a finished session's samplers.
    service = tinker.ServiceClient(config=config_for(keyed_service))
    dumped = pickle.dumps(service.create_sampling_client(base_model="tiny-byte").result())
    del service
    gc.collect()
    monkeypatch.setenv("TINKER_API_KEY", "tml-not-the-right-key")
    clone = pickle.loads(dumped)
    with pytest.raises(tinker.AuthenticationError):
        clone.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2))

    monkeypatch.setenv("TINKER_API_KEY", API_KEY)  # fixed: the next use attaches
    result = clone.sample(tinker.ModelInput.from_ints(PROMPT), 1, tinker.SamplingParams(max_tokens=2)).result(30)
    assert len(result.sequences[0].tokens) == 2


def test_spawned_workers_take_the_key_from_their_environment(
        owner: tinker.ServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker started with TINKER_API_KEY samples; one started without it gets the typed error, not a hang."""
    sampler = owner.create_sampling_client(base_model="tiny-byte").result()
    spawn = multiprocessing.get_context("spawn")
    monkeypatch.setenv("TINKER_API_KEY", API_KEY)  # a spawned child starts with a copy of this environment
    with_key = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    with_key.submit(os.getpid).result(timeout=120)  # started now, with the key
    monkeypatch.delenv("TINKER_API_KEY")
    without_key = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    try:
        good = with_key.submit(sample_tokens, sampler, PROMPT)
        bad = without_key.submit(sample_tokens, sampler, PROMPT)
        pid, tokens = good.result(timeout=120)
        assert pid != os.getpid() and len(tokens) == 3
        with pytest.raises(MissingApiKeyError, match="TINKER_API_KEY"):
            bad.result(timeout=120)
    finally:
        with_key.shutdown(cancel_futures=True)
        without_key.shutdown(cancel_futures=True)
