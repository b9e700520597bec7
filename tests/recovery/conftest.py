"""Fixtures of the recovery tests: a local service on 127.0.0.1, fast client settings, a tiny training loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

import tinker_actors as tinker
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper

TEXT = [104, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]  # "hello world"
ADAM = tinker.AdamParams(learning_rate=1e-2)


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.3) as svc:
        yield svc


@pytest.fixture
def faults(service: LocalService) -> Iterator[FaultHelper]:
    helper = FaultHelper(service)
    helper.clear()
    yield helper
    helper.clear()


def config(service: LocalService, protocol: str = "0.6.3", **overrides: object) -> Config:
    """Short limits, so that a failure ends in seconds."""
    settings: dict[str, object] = dict(
        api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False, protocol=protocol,
        retry=RetryPolicy(max_retries=3, base_delay=0.05, max_delay=0.2, deadline=8.0),
        poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=8.0)
    settings.update(overrides)
    return Config(**settings)


@pytest.fixture
def client(service: LocalService, faults: FaultHelper) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(config=config(service)) as svc:
        yield svc


def batch() -> list[tinker.Datum]:
    return [tinker.Datum(model_input=tinker.ModelInput.from_ints(TEXT[:-1]),
                         loss_fn_inputs={"target_tokens": TEXT[1:], "weights": [1.0] * (len(TEXT) - 1)})]


def train_step(training: tinker.TrainingClient) -> float:
    """One step, waiting for each result: the loss before the update."""
    loss = training.forward_backward(batch(), "cross_entropy").result(timeout=30).metrics["loss:sum"]
    training.optim_step(ADAM).result(timeout=30)
    return float(loss)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def optimizer_step(service: LocalService, model_id: str) -> int | None:
    """The server-side step counter of a model (its Adam step), read from the service."""
    for state in service.faults.model_states():
        if state.model_id == model_id:
            step: int | None = state.optimizer_step
            return step
    raise AssertionError(f"the service has no model {model_id}")
