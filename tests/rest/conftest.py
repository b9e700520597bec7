"""Fixtures of the REST tests (FEATURES R2): a local service with two users, clients for each, helpers.

``alice`` is the service's admin (the first configured user); ``bob`` is another user. Every test talks to the
service over real HTTP on 127.0.0.1 through tinker-actors' clients (or raw HTTP where the server is the subject).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tinker_actors as tinker
from tinker_actors.local import LocalService

KEYS = {"alice": "tml-alice-rest-key-0001", "bob": "tml-bob-rest-key-0002"}
WAIT_S = 60.0


def done(value: Any) -> Any:
    """A factory call's client: a future of it (0.38's call style) is resolved, a client is taken as it is."""
    return value.result(WAIT_S) if hasattr(value, "result") else value


def make_service(data_dir: Path, **options: Any) -> LocalService:
    return LocalService(data_dir=data_dir, api_keys=KEYS, long_poll_s=2.0, **options)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LocalService]:
    with make_service(tmp_path / "data") as service:
        yield service


def service_client(svc: LocalService, user: str = "alice", **options: Any) -> tinker.ServiceClient:
    return tinker.ServiceClient(base_url=svc.base_url, api_key=KEYS[user], **options)


@pytest.fixture
def alice(svc: LocalService) -> Iterator[tinker.ServiceClient]:
    with service_client(svc, "alice", project_id="alpha") as client:
        yield client


@pytest.fixture
def bob(svc: LocalService) -> Iterator[tinker.ServiceClient]:
    with service_client(svc, "bob") as client:
        yield client


def training_client(client: tinker.ServiceClient, rank: int = 2, seed: int = 0) -> tinker.TrainingClient:
    training: tinker.TrainingClient = done(client.create_lora_training_client("tiny-byte", rank=rank, seed=seed))
    return training
