"""Fixtures of the local service's tests: a fast zero-work service and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.local.support import Api
from tinker_actors.local import LocalService
from tinker_actors.testing import plugin


def pytest_configure(config: pytest.Config) -> None:
    plugin.pytest_configure(config)  # the local_service marker (the plugin's fixtures are imported directly)


@pytest.fixture
def zero_service() -> Iterator[LocalService]:
    with LocalService(zero_work=True, long_poll_s=0.3, gap_timeout_s=0.5) as svc:
        yield svc


@pytest.fixture
def api(zero_service: LocalService) -> Iterator[Api]:
    client = Api(zero_service)
    yield client
    client.close()
