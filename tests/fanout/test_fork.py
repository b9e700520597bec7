"""A fork()-started child refuses to use tinker_actors with a typed error, at once, instead of hanging.

The runtime's threads (the IoLoop, the actors) are not in a forked child; each case runs in a child
forked after the runtime started and reports what it raised through a pipe.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import pytest

import tinker_actors as tinker
from tinker_actors.local import LocalService

PROMPT = tinker.ModelInput.from_ints(list(b"fork"))
PARAMS = tinker.SamplingParams(max_tokens=2)
CHILD_LIMIT_S = 20.0  # generous under load; the refusal itself takes milliseconds


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5) as svc:
        yield svc


@pytest.fixture
def owner(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key) as client:
        yield client


def in_forked_child(action: Callable[[], object]) -> tuple[str, str, float]:
    """Run ``action`` in a fork()-ed child: (exception type name or 'ok', message, seconds it took there)."""
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)

    def child(pipe: Connection) -> None:
        started = time.monotonic()
        try:
            action()
            outcome = ("ok", "", time.monotonic() - started)
        except BaseException as error:  # reported to the parent, whatever it is
            outcome = (type(error).__name__, str(error), time.monotonic() - started)
        pipe.send(outcome)

    process = multiprocessing.get_context("fork").Process(target=child, args=(sender,), daemon=True)
    process.start()
    try:
        assert receiver.poll(CHILD_LIMIT_S), "the forked child hung instead of refusing"
        outcome: tuple[str, str, float] = receiver.recv()
        return outcome
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


def test_an_inherited_sampling_client_refuses_in_a_forked_child(owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    assert sampler.sample(PROMPT, 1, PARAMS).result(30).sequences  # the runtime runs here
    kind, message, seconds = in_forked_child(lambda: sampler.sample(PROMPT, 1, PARAMS).result(5))
    assert kind == "ForkedProcessError", (kind, message)
    assert "spawn" in message and "fork" in message and seconds < 1.0
    assert sampler.sample(PROMPT, 1, PARAMS).result(30).sequences  # the parent is unaffected


def test_an_unpickled_or_handle_built_client_refuses_in_a_forked_child(owner: tinker.ServiceClient) -> None:
    sampler = owner.create_sampling_client_future(base_model="tiny-byte").result(60)
    data, handle = pickle.dumps(sampler), sampler.get_sampler_handle()
    kind, message, _ = in_forked_child(lambda: pickle.loads(data).sample(PROMPT, 1, PARAMS).result(5))
    assert kind == "ForkedProcessError", (kind, message)
    kind, message, _ = in_forked_child(lambda: tinker.SamplingClient.from_sampler_handle(handle))
    assert kind == "ForkedProcessError", (kind, message)


def test_a_new_service_client_refuses_in_a_child_forked_after_the_runtime_started(
        service: LocalService, owner: tinker.ServiceClient) -> None:
    kind, message, seconds = in_forked_child(
        lambda: tinker.ServiceClient(base_url=service.base_url, api_key=service.api_key))
    assert kind == "ForkedProcessError", (kind, message)
    assert "runtime" in message and seconds < 1.0


def test_the_error_is_a_typed_client_stopped_error() -> None:
    from tinker_actors.fanout import ForkedProcessError

    assert issubclass(ForkedProcessError, tinker.ClientStoppedError)
    assert ForkedProcessError("x").retryable is False
