"""Batched polls (``retrieve_futures``, FEATURES S6): with ``sample_use_retrieve_futures`` on, a client learns
which samples finished from one long poll per sampling session; over real HTTP against the local service."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

import tinker_actors as tinker
from tests.sampling.conftest import PROMPT, config, done, service_with
from tinker_actors.errors import APIStatusError
from tinker_actors.local import LocalService
from tinker_actors.local.server.faults import FaultRule

BATCHED = {"sample_use_retrieve_futures": True}
MANY = 48


def _sample_many(service: LocalService, count: int = MANY, max_tokens: int = 24) -> list[Any]:
    with tinker.ServiceClient(config=config(service)) as client:
        sampler = done(client.create_sampling_client(base_model="tiny-byte"))
        params = tinker.SamplingParams(max_tokens=max_tokens, temperature=1.0, stop=[])
        futures = [sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, params) for _ in range(count)]
        return [future.result(timeout=60) for future in futures]


def _polls(service: LocalService) -> tuple[int, int]:
    endpoints = service.request_counts()["endpoints"]
    return (endpoints.get("retrieve_future", {}).get("received", 0),
            endpoints.get("retrieve_futures", {}).get("received", 0))


def test_batched_polls_resolve_every_sample_with_fewer_requests() -> None:
    # a short long poll and one model worker: samples wait longer than a poll is held, as on a busy service
    # (the slow-sampling fault makes that so on any machine: 48 samples of 24 steps of 2 ms or more, one after
    # the other, take 2.4 s or more, while each held poll lasts 0.2 s)
    options: dict[str, Any] = {"long_poll_s": 0.2, "workers": 1}
    with service_with({}, **options) as service:
        service.faults.slow_sampling(0.002)
        results = _sample_many(service)
        per_future, batched_off = _polls(service)
    with service_with(BATCHED, **options) as service:
        service.faults.slow_sampling(0.002)
        batched_results = _sample_many(service)
        fetches, batched = _polls(service)
    assert all(len(r.sequences[0].tokens) == 24 for r in results + batched_results)
    assert batched_off == 0 and batched > 0
    assert fetches == MANY  # each result read once, answered at once
    # Fewer requests in all (each result is still read once, but the waiting is shared): bench/bench_batched_polls.py
    # measures how many fewer; here each of the 48 per-sample polls is held about 6 times on average, the
    # session's batched poll answers as each sample ends, so half as many is a wide margin.
    assert 2 * (fetches + batched) < per_future, (per_future, fetches, batched)


def test_a_refusing_batched_endpoint_gives_typed_errors_and_no_hang() -> None:
    with service_with(BATCHED) as service:
        service.faults.add(FaultRule(endpoint="retrieve_futures", status=400, body={"error": "injected"}))
        started = time.monotonic()
        with pytest.raises(APIStatusError) as raised:
            _sample_many(service, count=8, max_tokens=4)
        assert raised.value.status_code == 400
        assert time.monotonic() - started < 30


def test_transient_failures_of_the_batched_endpoint_are_retried() -> None:
    with service_with(BATCHED) as service:
        service.faults.add(FaultRule(endpoint="retrieve_futures", status=503, times=2))
        results = _sample_many(service, count=8, max_tokens=4)
        assert len(results) == 8
        assert service.request_counts()["endpoints"]["retrieve_futures"]["faulted"] == 2


def test_the_endpoint_reports_completions_after_the_cursor_and_only_the_owners() -> None:
    # the flag off: the client polls each future itself, so the session's events are all still there
    with service_with({}, api_keys={"alice": "tml-alice", "bob": "tml-bob"}) as service, \
            tinker.ServiceClient(config=config(service, api_key="tml-alice")) as client:
        sampler = done(client.create_sampling_client(base_model="tiny-byte"))
        session = sampler.sampling_session_id
        params = tinker.SamplingParams(max_tokens=2)
        for _ in range(3):
            sampler.sample(tinker.ModelInput.from_ints(PROMPT), 1, params).result(timeout=30)
        target = {"type": "sampling_session", "sampling_session_id": session, "cloned_sampler_id": 0}
        with httpx.Client(base_url=service.base_url, timeout=10) as http:
            alice, bob = {"X-API-Key": "tml-alice"}, {"X-API-Key": "tml-bob"}
            first = http.post("/api/v1/retrieve_futures", headers=alice,
                              json={"target": target, "prev_cursor": 0, "timeout": 0}).json()
            assert len(first["completions"]) == 3
            assert {c["state"] for c in first["completions"]} == {"finished"}
            again = http.post("/api/v1/retrieve_futures", headers=alice,
                              json={"target": target, "prev_cursor": first["cursor"], "timeout": 0}).json()
            assert again == {"completions": [], "cursor": first["cursor"]}
            other = http.post("/api/v1/retrieve_futures", headers=bob, json={"target": target, "timeout": 0})
            assert other.status_code == 404
            bad = http.post("/api/v1/retrieve_futures", headers=alice, json={"prev_cursor": 0})
            assert bad.status_code == 400
