"""A session's trace (0.38's ``export_session_trace``, ``session export-trace``) from the local service: a
Chrome / Perfetto trace-event JSON file holding the session's requests, with plausible timings, laid out so a
trace viewer accepts it (slices on a track never overlap), and only the owner's."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest

import tinker_actors as tinker
from tests.rest.conftest import KEYS, WAIT_S, done, training_client
from tinker_actors import types
from tinker_actors.local import LocalService

TOKENS = list(b"the cat sat on the mat")


def _session_work(client: tinker.ServiceClient) -> dict[str, int]:
    """Train, save, sample (concurrently); returns how many requests of each kind were made."""
    training = training_client(client)
    datum = types.Datum(model_input=types.ModelInput.from_ints(TOKENS[:-1]),
                        loss_fn_inputs={"target_tokens": TOKENS[1:]})
    for _ in range(3):
        training.forward_backward([datum], "cross_entropy").result(WAIT_S)
        training.optim_step(types.AdamParams(learning_rate=0.01)).result(WAIT_S)
    path = training.save_weights_for_sampler("traced").result(WAIT_S).path
    sampler = done(client.create_sampling_client(model_path=path))
    params = types.SamplingParams(max_tokens=6, temperature=1.0)
    futures = [sampler.sample(types.ModelInput.from_ints(TOKENS[:4]), 1, params) for _ in range(6)]
    for future in futures:  # all sent before any is waited for
        future.result(WAIT_S)
    return {"forward_backward": 3, "optim_step": 3, "save_weights_for_sampler": 1, "asample": 6}


def _download(url: str) -> dict[str, Any]:
    answer = httpx.get(url, timeout=30)  # no key: the URL is the secret
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    trace: dict[str, Any] = json.loads(answer.content)
    return trace


def _slices(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def test_the_trace_holds_the_sessions_requests(svc: LocalService, alice: tinker.ServiceClient) -> None:
    started_us = time.time_ns() // 1000
    made = _session_work(alice)
    rest = alice.create_rest_client()
    trace = _download(rest.export_session_trace(alice.session_id).result(WAIT_S))
    exported_us = time.time_ns() // 1000

    assert trace["otherData"]["session_id"] == alice.session_id
    events = trace["traceEvents"]
    assert {e["ph"] for e in events} == {"M", "X"}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    processes = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert processes == {1: f"requests of session {alice.session_id}", 2: f"futures of session {alice.session_id}"}
    slices = _slices(trace)
    for event in slices:  # complete events in microseconds, each on a named track
        assert isinstance(event["ts"], int) and isinstance(event["dur"], int) and event["dur"] >= 0
        assert started_us - 1_000_000 <= event["ts"] <= event["ts"] + event["dur"] <= exported_us + 1_000_000
        assert (event["pid"], event["tid"]) in names and names[(event["pid"], event["tid"])].startswith(event["name"])
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for event in slices:
        tracks[(event["pid"], event["tid"])].append(event)
    for track in tracks.values():  # slices of a track never overlap (a viewer needs them nested or apart)
        track.sort(key=lambda e: e["ts"])
        assert all(a["ts"] + a["dur"] <= b["ts"] for a, b in itertools.pairwise(track))

    requests = [e for e in slices if e["pid"] == 1]
    counts: dict[str, int] = defaultdict(int)
    for event in requests:
        counts[event["name"]] += 1
    for endpoint, number in made.items():
        assert counts[endpoint] == number, (endpoint, counts)
    for endpoint in ("create_session", "create_model", "create_sampling_session", "retrieve_future"):
        assert counts[endpoint] >= 1, counts
    assert all(e["args"]["status"] in (200, 408) for e in requests if e["name"] == "retrieve_future")
    assert all(e["args"]["method"] == "POST" and e["args"]["status"] == 200 for e in requests
               if e["name"] in made)

    # each piece of work: from its request's arrival to the poll that returned its result
    submitted = {e["args"]["request_id"]: e for e in requests if "request_id" in e["args"] and e["name"] in made}
    work = [e for e in slices if e["pid"] == 2]
    assert {e["args"]["request_id"] for e in work} >= set(submitted)
    for event in work:
        if event["args"]["request_id"] in submitted:
            request = submitted[event["args"]["request_id"]]
            assert event["ts"] == request["ts"] and event["dur"] >= request["dur"]
            assert event["name"] == request["name"]
    assert len(tracks) >= len({e["name"] for e in slices})  # concurrent samples got lanes of their own


def test_only_the_owner_exports_and_others_requests_stay_out(svc: LocalService, alice: tinker.ServiceClient,
                                                              bob: tinker.ServiceClient) -> None:
    training_client(alice)
    bob_rest = bob.create_rest_client()
    with pytest.raises(tinker.NotFoundError):
        bob_rest.export_session_trace(alice.session_id).result(WAIT_S)
    with pytest.raises(tinker.NotFoundError):
        bob_rest.export_session_trace("no-such-session").result(WAIT_S)
    intrusion = httpx.post(f"{svc.base_url}/api/v1/session_heartbeat", json={"session_id": alice.session_id},
                           headers={"X-API-Key": KEYS["bob"]}, timeout=30)
    assert intrusion.status_code == 404
    trace = _download(alice.create_rest_client().export_session_trace(alice.session_id).result(WAIT_S))
    assert all(e["args"]["status"] != 404 for e in _slices(trace))
    assert httpx.get(f"{svc.base_url}/local/v1/traces/not-a-token.json", timeout=30).status_code == 404


def test_cli_exports_the_trace(svc: LocalService, alice: tinker.ServiceClient, tmp_path: Any) -> None:
    training_client(alice)
    env = {**os.environ, "TINKER_BASE_URL": svc.base_url, "TINKER_API_KEY": KEYS["alice"], "TINKER_TELEMETRY": "0"}
    base = [sys.executable, "-m", "tinker_actors.cli", "session", "export-trace", alice.session_id]
    saved = subprocess.run([*base, "-f", "json"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert saved.returncode == 0, saved.stderr
    report = json.loads(saved.stdout)
    assert report["destination"] == str(tmp_path / f"{alice.session_id}.trace.json")
    assert report["file_size_bytes"] == (tmp_path / f"{alice.session_id}.trace.json").stat().st_size
    assert any(e["name"] == "create_model" for e in _slices(json.loads((tmp_path / report["destination"]).read_text())))
    url_only = subprocess.run([*base, "--url-only"], capture_output=True, text=True, env=env, timeout=120)
    assert url_only.returncode == 0 and url_only.stdout.strip().startswith(svc.base_url + "/local/v1/traces/")
    assert _slices(_download(url_only.stdout.strip()))
