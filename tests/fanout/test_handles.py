"""Sampler handles and per-clone seq-id blocks (join_sampling_session), in one process, over real HTTP."""

from __future__ import annotations

import base64
import gc
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, MissingApiKeyError, PollBackoff, RetryPolicy
from tinker_actors.fanout import InvalidSamplerHandleError
from tinker_actors.fanout.seq_blocks import BLOCK
from tinker_actors.local import LocalService

ALICE = "tml-HANDLE-ALICE-8d1f3a"
BOB = "tml-HANDLE-BOB-2c9e7b"
PROMPT = tinker.ModelInput.from_ints(list(b"the sea"))
PARAMS = tinker.SamplingParams(max_tokens=2)
JOIN = {"sample_join_sampling_session": True}


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    """Two users; the service announces that clones join their sampling session (the 0.38 flag)."""
    with LocalService(api_keys={"alice": ALICE, "bob": BOB}, long_poll_s=0.5, protocol_flags=JOIN) as svc:
        yield svc


def config(svc: LocalService, key: str = ALICE) -> Config:
    return Config(api_key=key, base_url=svc.base_url, telemetry_enabled=False,
                  retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.05, deadline=10.0),
                  poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=10.0)


@pytest.fixture
def owner(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(config=config(service)) as client:
        yield client


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home-for-tests")  # no stored credentials either


def seq_ids_seen(svc: LocalService, sampling_session_id: str) -> list[int]:
    return sorted(entry["seq_id"] for entry in svc.stats.snapshot()["sequenced"] if entry["id"] == sampling_session_id)


def test_a_handle_holds_no_credential_and_names_the_sampler(owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    handle = sampler.get_sampler_handle()
    assert isinstance(handle, str) and handle.isascii()
    decoded = base64.urlsafe_b64decode(handle)
    assert ALICE.encode() not in decoded and ALICE not in handle
    fields = json.loads(decoded)
    assert fields["sampling_session_id"] == sampler.sampling_session_id and fields["base_model"] == "tiny-byte"
    assert not any("key" in name or "token" in name for name in fields)


def test_each_clone_from_a_handle_gets_its_own_block_of_seq_ids(service: LocalService,
                                                                owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    handle = sampler.get_sampler_handle()
    clones = [tinker.SamplingClient.from_sampler_handle(handle) for _ in range(3)]  # through the owner here
    clones.append(pickle.loads(pickle.dumps(sampler)))
    for client in [sampler, *clones]:
        for _ in range(2):
            assert len(client.sample(PROMPT, 1, PARAMS).result(30).sequences[0].tokens) == 2
    seen = seq_ids_seen(service, sampler.sampling_session_id)
    assert len(seen) == 10 and len(set(seen)) == 10  # no two clients ever sent the same seq id
    blocks = sorted({seq_id // BLOCK for seq_id in seen})
    assert blocks == [0, 1, 2, 3, 4]  # the original is client 0; each clone joined and got the next number
    assert all(seq_id % BLOCK in (0, 1) for seq_id in seen)
    assert service.stats.snapshot()["endpoints"]["join_sampling_session"]["received"] >= 4


def test_from_a_handle_with_api_key_uses_that_key(service: LocalService) -> None:
    # The owner goes away without finishing its session (as an owner in another process looks from here).
    owner = tinker.ServiceClient(config=config(service))
    handle = owner.create_sampling_client_future(base_model="tiny-byte").result(60).get_sampler_handle()
    del owner
    gc.collect()
    with pytest.raises(MissingApiKeyError, match="TINKER_API_KEY"):
        tinker.SamplingClient.from_sampler_handle(handle)  # no owner here, no key in the environment
    clone = tinker.SamplingClient.from_sampler_handle(handle, api_key=ALICE)
    assert clone.sample(PROMPT, 1, PARAMS).result(30).sequences
    # The clone's process needed no session of its own: it samples on the creator's sampling session.
    assert not tinker.ServiceClient.shared(base_url=service.base_url, api_key=ALICE).has_session
    # Another user's key: their service answers the session as unknown (404 at the join, before any sample).
    stranger = tinker.SamplingClient.from_sampler_handle(handle, api_key=BOB)
    with pytest.raises(tinker.NotFoundError, match="sampling session"):
        stranger.sample(PROMPT, 1, PARAMS).result(30)


def test_the_environment_key_is_used_when_no_owner_lives_here(service: LocalService,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    owner = tinker.ServiceClient(config=config(service))
    handle = owner.create_sampling_client_future(base_model="tiny-byte").result(60).get_sampler_handle()
    del owner
    gc.collect()
    monkeypatch.setenv("TINKER_API_KEY", ALICE)
    clone = tinker.SamplingClient.from_sampler_handle(handle)
    assert clone.sample(PROMPT, 1, PARAMS).result(30).sequences


@pytest.mark.parametrize("bad", ["", "not a handle", base64.urlsafe_b64encode(b"[1, 2]").decode(),
                                 base64.urlsafe_b64encode(b'{"base_url": "http://127.0.0.1:1"}').decode(),
                                 base64.urlsafe_b64encode(json.dumps({"v": 99, "base_url": "http://x",
                                                                      "sampling_session_id": "s"}).encode()).decode()])
def test_a_string_that_is_not_a_handle_is_a_typed_error(bad: str) -> None:
    with pytest.raises(InvalidSamplerHandleError) as raised:
        tinker.SamplingClient.from_sampler_handle(bad)
    assert isinstance(raised.value, tinker.InvalidInputError)


def test_a_handle_of_the_official_sdk_is_read(service: LocalService, owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    official = {"session_id": owner.session_id, "sampling_session_id": sampler.sampling_session_id,
                "holder": {"base_url": service.base_url, "default_headers_overrides": {}, "client_config": {},
                           "client_dynamic_config": {}, "api_key": None},
                "base_model": "tiny-byte", "record_stability_info": False}
    handle = base64.urlsafe_b64encode(json.dumps(official).encode()).decode()
    clone = tinker.SamplingClient.from_sampler_handle(handle)
    assert clone.base_model == "tiny-byte" and clone.sample(PROMPT, 1, PARAMS).result(30).sequences


def test_without_the_flag_a_clone_draws_a_random_block() -> None:
    with LocalService(api_key=ALICE, long_poll_s=0.5) as svc, tinker.ServiceClient(config=config(svc)) as owner:
        sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
        clones = [tinker.SamplingClient.from_sampler_handle(sampler.get_sampler_handle()) for _ in range(2)]
        for client in clones:
            client.sample(PROMPT, 1, PARAMS).result(30)
        assert "join_sampling_session" not in svc.stats.snapshot()["endpoints"]  # the server did not offer it
        blocks = {seq_id // BLOCK for seq_id in seq_ids_seen(svc, sampler.sampling_session_id)}
        assert len(blocks) == 2 and all(1 <= block < BLOCK for block in blocks)


def join(svc: LocalService, key: str, sampling_session_id: str) -> httpx.Response:
    return httpx.post(f"{svc.base_url}/api/v1/join_sampling_session", headers={"X-API-Key": key}, timeout=10,
                      json={"sampling_session_id": sampling_session_id, "type": "join_sampling_session"})


def test_join_numbers_clients_per_session_only_for_its_owner_and_across_restarts(tmp_path: Path) -> None:
    with LocalService(data_dir=tmp_path, api_keys={"alice": ALICE, "bob": BOB}, protocol_flags=JOIN) as svc, \
            tinker.ServiceClient(config=config(svc)) as owner:
        first = owner.create_sampling_client_future(base_model="tiny-byte").result(60).sampling_session_id
        second = owner.create_sampling_client_future(base_model="tiny-byte").result(60).sampling_session_id
        numbers = [join(svc, ALICE, first).json()["client_counter"] for _ in range(3)]
        assert numbers == [1, 2, 3]
        assert join(svc, ALICE, second).json()["client_counter"] == 1  # numbers are per session
        assert join(svc, BOB, first).status_code == 404  # another user's session: as an unknown one
        assert join(svc, ALICE, "no-such-session").status_code == 404
        assert join(svc, ALICE, "").status_code in (400, 404)
        svc.restart()  # clones from before keep sampling: numbers are never handed out twice
        assert join(svc, ALICE, first).json()["client_counter"] > 3


def test_a_backoff_from_elsewhere_holds_back_this_process_samples(owner: tinker.ServiceClient) -> None:
    import time

    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    assert sampler.backoff_remaining() == 0.0
    sampler.back_off(1.0)  # as another process's 429 with Retry-After: 1 would
    assert 0.5 < sampler.backoff_remaining() <= 1.0
    started = time.monotonic()
    assert sampler.sample(PROMPT, 1, PARAMS).result(30).sequences
    assert time.monotonic() - started >= 0.5
    sampler.back_off(0.0)  # never shortens a backoff, never fails
    for bad in (-1, float("nan"), 4000, "1"):
        with pytest.raises(tinker.InvalidInputError):
            sampler.back_off(bad)  # type: ignore[arg-type]
