"""Session-less telemetry: errors of REST calls made without a session (a ``RestClient`` of its own, or a
ServiceClient's REST client before its session exists) reach the service under a ``sessionless-<uuid4>`` id,
with no SESSION_START/SESSION_END, as the official 0.38 SDK reports its REST-only clients (docs/telemetry.md).

The official SDK's own session-less batch is compared with ours against the same local service (run in its
own interpreter; skipped without it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tinker_actors as tinker
from tests.compat038.conftest import official_env, official_python
from tests.wire.conftest import REPO
from tinker_actors.local import LocalService
from tinker_actors.local.server.faults import FaultRule
from tinker_actors.local.server.wire_log import WireRecord
from tinker_actors.telemetry import SESSIONLESS_PREFIX, SessionTelemetry

from .conftest import MakeConfig, session_events

_TELEMETRY = "/api/v1/telemetry"
_ARRIVAL_S = 10.0  # generous under load; a flush is sent at once, the periodic one only after 10 s
_BATCH_FIELDS = {"platform", "sdk_version", "session_id", "process_uuid"}
_OFFICIAL_SESSIONLESS = ("import tinker\n"
                         "rest = tinker.RestClient()\n"
                         "try:\n"
                         "    rest.get_training_run('no-such-run').result()\n"
                         "except tinker.NotFoundError:\n"
                         "    pass\n"
                         "assert rest.get_telemetry()._wait_until_drained_sync()\n")


@pytest.fixture
def fresh_key() -> str:
    """A key of its own: standalone RestClients are shared per (URL, key) in the process."""
    return f"tml-sessionless-{uuid.uuid4().hex}"


@pytest.fixture
def telemetry_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TINKER_TELEMETRY", "1")
    monkeypatch.delenv("TINKER_ACTORS_PROTOCOL", raising=False)
    yield


def _arrived(service: LocalService, telemetry_id: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + _ARRIVAL_S
    while True:
        events = session_events(service, telemetry_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.02)


def _sessionless_id(telemetry: SessionTelemetry | None) -> str:
    assert telemetry is not None and telemetry.enabled
    telemetry_id = telemetry.session_id
    assert telemetry_id.startswith(SESSIONLESS_PREFIX)
    assert uuid.UUID(telemetry_id.removeprefix(SESSIONLESS_PREFIX)).version == 4
    return telemetry_id


def _received(service: LocalService, endpoint: str) -> int:
    return int(service.request_counts()["endpoints"].get(endpoint, {}).get("received", 0))


def _telemetry_posts(records: list[WireRecord]) -> list[WireRecord]:
    return [record for record in records if record.method == "POST" and record.path == _TELEMETRY]


def _assert_no_key(service: LocalService, records: list[WireRecord], key: str) -> None:
    assert key not in json.dumps(service.telemetry_events())
    assert all(key.encode() not in record.body for record in _telemetry_posts(records))


def test_a_standalone_rest_clients_404_reaches_the_service_without_a_session(
        service: LocalService, fresh_key: str, telemetry_on: None) -> None:
    created_before = _received(service, "create_session")
    with service.wire_log.capture() as capture:
        rest = tinker.RestClient(base_url=service.base_url, api_key=fresh_key)
        telemetry = rest.get_telemetry()
        telemetry_id = _sessionless_id(telemetry)
        assert tinker.RestClient(base_url=service.base_url, api_key=fresh_key).get_telemetry() is telemetry
        with pytest.raises(tinker.NotFoundError):
            rest.get_training_run("no-such-run").result(10)
        assert telemetry is not None
        telemetry.flush()  # the periodic flush would wait 10 s
        (event,) = _arrived(service, telemetry_id)
    assert event["event"] == "GENERIC_EVENT" and event["event_name"] == "user_error"
    assert event["severity"] == "WARNING" and event["event_session_index"] == 0
    assert event["event_data"]["status_code"] == 404
    assert event["event_data"]["method"] == "RestClient.get_training_run"
    assert set(event["batch"]) == _BATCH_FIELDS and event["batch"]["sdk_version"] == "0.38.0"
    assert telemetry.counters().acknowledged == 1
    assert not rest._service.has_session
    assert _received(service, "create_session") == created_before
    _assert_no_key(service, capture.records, fresh_key)


def test_a_server_error_of_a_standalone_rest_client_is_an_unhandled_exception_with_the_key_redacted(
        service: LocalService, fresh_key: str, telemetry_on: None) -> None:
    rest = tinker.RestClient(base_url=service.base_url, api_key=fresh_key)
    telemetry_id = _sessionless_id(rest.get_telemetry())
    # Not retried (x-should-retry: false). The body quotes the key, which must not travel on.
    service.faults.add(FaultRule(endpoint="list_training_runs", status=500, headers={"x-should-retry": "false"},
                                 body={"error": f"backend down for {fresh_key}"}))
    with service.wire_log.capture() as capture:
        with pytest.raises(tinker.InternalServerError):
            rest.list_training_runs().result(30)
        service.faults.clear()
        telemetry = rest.get_telemetry()
        assert telemetry is not None
        assert telemetry.wait_until_settled(_ARRIVAL_S)
        (event,) = session_events(service, telemetry_id)
    assert event["event"] == "UNHANDLED_EXCEPTION" and event["severity"] == "ERROR"
    assert event["error_type"] == "InternalServerError" and "**********" in event["error_message"]
    assert "Traceback" in event["traceback"]
    _assert_no_key(service, capture.records, fresh_key)


def test_with_telemetry_off_a_standalone_rest_client_starts_and_sends_nothing(
        service: LocalService, monkeypatch: pytest.MonkeyPatch, telemetry_on: None) -> None:
    sent: dict[str, int] = {}
    for setting in ("1", "0"):
        monkeypatch.setenv("TINKER_TELEMETRY", setting)
        rest = tinker.RestClient(base_url=service.base_url, api_key=f"tml-sessionless-{uuid.uuid4().hex}")
        with service.wire_log.capture() as capture:
            with pytest.raises(tinker.NotFoundError):
                rest.get_training_run("no-such-run").result(10)
            telemetry = rest.get_telemetry()
            if telemetry is not None:
                telemetry.flush()
            time.sleep(0.5)  # what would be sent is sent by now (a flush goes at once)
        sent[setting] = len(_telemetry_posts(capture.records))
        assert (telemetry is None) == (setting == "0")
    assert sent == {"1": 1, "0": 0}


@pytest.mark.parametrize("protocol", ["0.38", "0.6.3"])
def test_a_service_clients_rest_client_reports_session_less_before_the_session_and_to_it_after(
        service: LocalService, make_config: MakeConfig, protocol: str) -> None:
    # No flush: leaving the ServiceClient's block (close()) drains both telemetries.
    with service.wire_log.capture() as capture, \
            tinker.ServiceClient(config=make_config().replace(protocol=protocol)) as client:
        early = client.create_rest_client()
        before = early.get_telemetry()
        with pytest.raises(tinker.NotFoundError):
            early.get_training_run("before-the-session").result(10)
        session_id = client.session_id  # the session exists from here on
        later = client.create_rest_client()
        assert early.get_telemetry() is later.get_telemetry() is client.telemetry
        with pytest.raises(tinker.NotFoundError):
            later.get_training_run("after-the-session").result(10)
    session = [e for e in session_events(service, session_id) if e["event"] == "GENERIC_EVENT"]
    assert [e["event_data"]["message"].count("after-the-session") for e in session] == [1]
    batches = [r.decoded() for r in _telemetry_posts(capture.records)]
    if protocol == "0.6.3":  # no session-less mode in 0.6.3: only the session's batches
        assert before is None
        assert {batch["session_id"] for batch in batches} == {session_id}
        return
    telemetry_id = _sessionless_id(before)
    (early_event,) = session_events(service, telemetry_id)
    assert early_event["event_name"] == "user_error" and "before-the-session" in early_event["event_data"]["message"]
    assert {batch["session_id"] for batch in batches} == {session_id, telemetry_id}


def test_a_session_less_error_is_sent_when_the_process_exits(service: LocalService, fresh_key: str,
                                                             tmp_path: Path) -> None:
    script = ("import tinker_actors as tinker\n"
              "rest = tinker.RestClient()\n"
              "try:\n"
              "    rest.get_training_run('no-such-run').result(10)\n"
              "except tinker.NotFoundError:\n"
              "    pass\n"
              "print(rest.get_telemetry().session_id)\n")  # no flush: the exit drains it
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "TINKER_BASE_URL": service.base_url, "TINKER_API_KEY": fresh_key, "TINKER_TELEMETRY": "1",
           "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 30.0
    telemetry_id = done.stdout.strip().splitlines()[-1]
    assert telemetry_id.startswith(SESSIONLESS_PREFIX)
    (event,) = session_events(service, telemetry_id)
    assert event["event_name"] == "user_error"


def test_the_official_038_sdks_session_less_batch_is_accepted_and_looks_like_ours(
        service: LocalService, fresh_key: str, telemetry_on: None, tmp_path: Path) -> None:
    python = official_python()
    with service.wire_log.capture() as official:
        done = subprocess.run([str(python), "-c", _OFFICIAL_SESSIONLESS],
                              env={**official_env(service, tmp_path), "TINKER_TELEMETRY": "1"},
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (official_batch,) = [r.decoded() for r in _telemetry_posts(official.records)
                         if r.status == 200 and str(r.decoded().get("session_id", "")).startswith(SESSIONLESS_PREFIX)]
    assert set(session_events(service, official_batch["session_id"])[0]["batch"]) == _BATCH_FIELDS  # stored

    rest = tinker.RestClient(base_url=service.base_url, api_key=fresh_key)
    with service.wire_log.capture() as ours:
        with pytest.raises(tinker.NotFoundError):
            rest.get_training_run("no-such-run").result(10)
        telemetry = rest.get_telemetry()
        assert telemetry is not None and telemetry.wait_until_settled(_ARRIVAL_S)
    (our_batch,) = [r.decoded() for r in _telemetry_posts(ours.records)]
    for batch in (official_batch, our_batch):
        assert set(batch) == {*_BATCH_FIELDS, "events"}
        assert uuid.UUID(batch["session_id"].removeprefix(SESSIONLESS_PREFIX)).version == 4
        assert not {e["event"] for e in batch["events"]} & {"SESSION_START", "SESSION_END"}
    (official_error,) = [e for e in official_batch["events"] if e.get("event_name") == "user_error"]
    (our_error,) = our_batch["events"]
    assert set(our_error) == set(official_error)
    assert (our_error["severity"], our_error["event_data"]["status_code"]) == \
        (official_error["severity"], official_error["event_data"]["status_code"]) == ("WARNING", 404)
    assert our_batch["sdk_version"] == official_batch["sdk_version"]
