"""pytest plugin: ``local_service``, ``faults`` and ``local_service_env`` fixtures.

Enable it with ``pytest_plugins = ["tinker_actors.testing.plugin"]`` in your top-level conftest.
Configure the service per test with a marker::

    @pytest.mark.local_service(zero_work=True, long_poll_s=1.0)
    def test_fast(local_service): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tinker_actors.local import LocalService
from tinker_actors.testing.faults import FaultHelper

__all__ = ["faults", "local_service", "local_service_env", "pytest_configure"]

# Short holds and timeouts suit tests; the marker can override any of them.
_TEST_DEFAULTS: dict[str, Any] = {"long_poll_s": 5.0, "gap_timeout_s": 2.0}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_service(**options): LocalService options for the local_service fixture")


@pytest.fixture
def local_service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    """A running local service with a fresh data directory, stopped after the test."""
    marker = request.node.get_closest_marker("local_service")
    options = {**_TEST_DEFAULTS, **(marker.kwargs if marker is not None else {})}
    options.setdefault("data_dir", tmp_path_factory.mktemp("tinker-local"))
    service = LocalService(**options)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def faults(local_service: LocalService) -> Iterator[FaultHelper]:
    """Fault rules for ``local_service``; all are cleared after the test."""
    helper = FaultHelper(local_service)
    try:
        yield helper
    finally:
        helper.clear()


@pytest.fixture
def local_service_env(local_service: LocalService, monkeypatch: pytest.MonkeyPatch) -> LocalService:
    """Also sets TINKER_BASE_URL and TINKER_API_KEY, so clients built from the environment use it."""
    monkeypatch.setenv("TINKER_BASE_URL", local_service.base_url)
    monkeypatch.setenv("TINKER_API_KEY", local_service.api_key)
    return local_service
