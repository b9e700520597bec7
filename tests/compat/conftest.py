"""Fixtures for the contract tests: the official ``tinker`` SDK against the local service.

Each test module skips itself (with the reason) when the official SDK is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tinker_actors.local import LocalService


@pytest.fixture(scope="package")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=5.0) as svc:
        yield svc


@pytest.fixture
def sdk_env(service: LocalService, monkeypatch: pytest.MonkeyPatch) -> LocalService:
    """Point the official SDK at the service; telemetry off unless a test turns it on."""
    monkeypatch.delenv("TINKER_API_KEY", raising=False)  # it would override api_key=
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    return service


def sdk_warnings(records: list[logging.LogRecord]) -> list[str]:
    """Warnings (and worse) the official SDK logged: there must be none against the local service."""
    return [f"{r.name}: {r.getMessage()}" for r in records
            if r.name.startswith("tinker") and not r.name.startswith("tinker_actors")
            and r.levelno >= logging.WARNING]
