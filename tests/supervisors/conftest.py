from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.supervisors.actors import EventLog, actor_threads, wait_until


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture(autouse=True)
def _quiet_crash_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Crashes are the point of these tests; keep their tracebacks out of the output.
    caplog.set_level(logging.CRITICAL, logger="pykka")
    caplog.set_level(logging.CRITICAL, logger="supervisors")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = actor_threads()
    yield
    assert wait_until(lambda: not (actor_threads() - before), timeout=5.0), (
        f"actor threads left behind: {sorted(t.name for t in actor_threads() - before)}"
    )
