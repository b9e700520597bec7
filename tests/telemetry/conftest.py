from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tinker_actors.config import Config, PollBackoff, RetryPolicy, TelemetrySettings
from tinker_actors.local import LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(zero_work=True, long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture(autouse=True)
def no_faults(service: LocalService) -> Iterator[None]:
    service.faults.clear()
    yield
    service.faults.clear()


MakeConfig = Callable[..., Config]


@pytest.fixture
def make_config(service: LocalService) -> MakeConfig:
    """A config with fast limits; keyword arguments change the telemetry settings."""

    def build(**telemetry: Any) -> Config:
        settings = {"flush_interval": 30.0, "stats_interval": None, "retry_base_delay": 0.02,
                    "retry_max_delay": 0.1, "drain_timeout": 1.0, **telemetry}
        return Config(api_key=service.api_key, base_url=service.base_url,
                      retry=RetryPolicy(max_retries=0, base_delay=0.01, max_delay=0.05, deadline=5.0),
                      poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=3.0,
                      telemetry=TelemetrySettings(**settings))

    return build


def session_events(service: LocalService, session_id: str) -> list[dict[str, Any]]:
    """The events the service acknowledged for one session, in arrival order."""
    return [e for e in service.telemetry_events() if e["batch"].get("session_id") == session_id]
