"""Sessions: heartbeats reach the server concurrently, failures are warned about, the session ends with its owner."""

from __future__ import annotations

import gc
import time

import structlog

import tinker_actors as tinker
from tinker_actors.clients.session import BeatNow, SessionStatus
from tinker_actors.config import Config
from tinker_actors.local import FaultRule, LocalService


def heartbeats(service: LocalService) -> int:
    return int(service.stats.snapshot()["endpoints"].get("session_heartbeat", {}).get("received", 0))


def test_heartbeats_for_every_live_session(service: LocalService, protocol: str) -> None:
    config = Config(api_key="tml-k", base_url=service.base_url, heartbeat_interval=0.2, telemetry_enabled=False,
                    protocol=protocol)
    before = heartbeats(service)
    with tinker.ServiceClient(config=config) as one, tinker.ServiceClient(config=config) as two:
        assert one.session_id and two.session_id  # sessions are created on first use (here)
        time.sleep(1.5)
        status = one.runtime.session_manager.ask(SessionStatus(), timeout=2)
        assert one.session_id in status and two.session_id in status
        assert all(age < 1.0 for sid, age in status.items() if sid in (one.session_id, two.session_id))
    assert heartbeats(service) - before >= 6  # two sessions, ~0.2 s apart, for 1.5 s


def test_closed_or_collected_client_stops_heartbeating(service: LocalService) -> None:
    config = Config(api_key="tml-k", base_url=service.base_url, heartbeat_interval=0.1, telemetry_enabled=False)
    client = tinker.ServiceClient(config=config)
    session_id = client.session_id
    manager = client.runtime.session_manager
    del client
    gc.collect()
    manager.tell(BeatNow())
    time.sleep(0.3)
    assert session_id not in manager.ask(SessionStatus(), timeout=2)


def test_failing_heartbeats_warn_once_per_period(service: LocalService) -> None:
    config = Config(api_key="tml-k", base_url=service.base_url, heartbeat_interval=0.05, heartbeat_warning_after=0.3,
                    telemetry_enabled=False)
    with tinker.ServiceClient(config=config) as client:
        assert client.session_id  # created on first use: heartbeats start
        service.faults.add(FaultRule(endpoint="session_heartbeat", status=503))
        with structlog.testing.capture_logs() as logs:
            time.sleep(1.2)
        service.faults.clear()
        warnings = [entry for entry in logs if entry["event"] == "session.heartbeat_failing"
                    and entry.get("session_id") == client.session_id]
        assert 1 <= len(warnings) <= 4  # once per 0.3 s period, not once per failed heartbeat
