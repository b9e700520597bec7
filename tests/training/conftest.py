"""What the training tests share: a local service per test module (its models and futures stay apart)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tinker_actors.local import LocalService


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc
