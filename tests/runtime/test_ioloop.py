"""IoLoop: submissions, completions told to actors, cancellation on stop, bounded stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest

from supervisors import SupervisedActor
from tinker_actors.errors import ClientStoppedError
from tinker_actors.runtime import IoLoop, IoLoopStoppedError, Outcome


@dataclass(frozen=True)
class Done:
    tag: str
    outcome: Outcome[Any]


class Inbox(SupervisedActor):
    """Collects completions; the test reads them with a bounded wait."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[Done] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Done):
            self.received.append(message)
            return None
        if message == "received":
            return list(self.received)
        return None


@pytest.fixture
def ioloop() -> Iterator[IoLoop]:
    loop = IoLoop("test-ioloop")
    loop.start()
    yield loop
    loop.stop(2.0)


def received(ref: pykka.ActorRef[Any], count: int, timeout: float = 3.0) -> list[Done]:
    deadline = time.monotonic() + timeout
    while True:
        got: list[Done] = ref.ask("received", block=True, timeout=1.0)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.005)


async def value_after(value: Any, delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    return value


async def fail() -> None:
    raise ValueError("coroutine failed")


def test_submit_returns_a_concurrent_future(ioloop: IoLoop) -> None:
    future = ioloop.submit(value_after(41))
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=1.0) == 41
    with pytest.raises(ValueError, match="coroutine failed"):
        ioloop.submit(fail()).result(timeout=1.0)


def test_submit_and_tell_delivers_outcomes_as_messages(ioloop: IoLoop) -> None:
    ref = Inbox.start()
    ioloop.submit_and_tell(value_after("ok"), ref, lambda outcome: Done("ok", outcome))
    ioloop.submit_and_tell(fail(), ref, lambda outcome: Done("fail", outcome))
    got = {done.tag: done.outcome for done in received(ref, 2)}
    assert got["ok"].ok and got["ok"].unwrap() == "ok"
    assert not got["fail"].ok and isinstance(got["fail"].error, ValueError)
    with pytest.raises(ValueError):
        got["fail"].unwrap()
    ref.stop(timeout=1.0)


def test_a_dead_actor_is_ignored_and_the_loop_lives_on(ioloop: IoLoop) -> None:
    ref = Inbox.start()
    ref.stop(timeout=1.0)
    handle = ioloop.submit_and_tell(value_after(1), ref, lambda outcome: Done("late", outcome))
    handle.future.result(timeout=1.0)

    def broken(outcome: Outcome[Any]) -> Any:
        raise RuntimeError("make_message is buggy")

    alive = Inbox.start()
    ioloop.submit_and_tell(value_after(2), alive, broken).future.result(timeout=1.0)
    assert ioloop.submit(value_after(3)).result(timeout=1.0) == 3
    alive.stop(timeout=1.0)


def test_cancelling_a_handle_tells_a_cancelled_outcome(ioloop: IoLoop) -> None:
    ref = Inbox.start()
    handle = ioloop.submit_and_tell(value_after(1, delay=10.0), ref, lambda outcome: Done("c", outcome))
    time.sleep(0.02)
    assert handle.cancel()
    (done,) = received(ref, 1)
    assert done.outcome.cancelled
    ref.stop(timeout=1.0)


def test_stop_cancels_pending_work_and_refuses_more() -> None:
    loop = IoLoop("stopping")
    loop.start()
    ref = Inbox.start()
    pending = loop.submit(value_after(1, delay=10.0))
    loop.submit_and_tell(value_after(2, delay=10.0), ref, lambda outcome: Done("p", outcome))
    began = time.monotonic()
    assert loop.stop(2.0) is True
    assert time.monotonic() - began < 1.0
    assert pending.cancelled()
    (done,) = received(ref, 1)
    assert done.outcome.cancelled
    coro = value_after(3)
    with pytest.raises(IoLoopStoppedError):
        loop.submit(coro)
    # closed, so Python does not warn about a coroutine never awaited
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert issubclass(IoLoopStoppedError, ClientStoppedError)
    with pytest.raises(IoLoopStoppedError):
        loop.call_soon(lambda: None)
    assert loop.stop(1.0) is True  # idempotent
    with pytest.raises(IoLoopStoppedError):
        loop.start()
    ref.stop(timeout=1.0)


def test_stop_is_bounded_when_a_coroutine_blocks_the_loop() -> None:
    loop = IoLoop("blocked")
    loop.start()

    async def blocks() -> None:
        time.sleep(0.5)  # the bug we must survive: blocking inside the loop

    loop.submit(blocks())
    time.sleep(0.02)
    began = time.monotonic()
    assert loop.stop(0.1) is False
    assert time.monotonic() - began < 0.3
    thread = next(t for t in threading.enumerate() if t.name == "blocked")
    assert thread.daemon
    thread.join(2.0)


def test_call_soon_and_in_loop_thread(ioloop: IoLoop) -> None:
    seen: concurrent.futures.Future[bool] = concurrent.futures.Future()
    ioloop.call_soon(lambda: seen.set_result(ioloop.in_loop_thread()))
    assert seen.result(timeout=1.0) is True
    assert ioloop.in_loop_thread() is False
    assert ioloop.loop.is_running()


def test_stop_from_inside_the_loop_does_not_deadlock() -> None:
    loop = IoLoop("self-stop")
    loop.start()

    async def stop_myself() -> bool:
        return loop.stop(1.0)

    future = loop.submit(stop_myself())
    assert future.result(timeout=2.0) is True
    assert loop._stopped.wait(2.0)


def test_many_threads_submit_concurrently(ioloop: IoLoop) -> None:
    ref = Inbox.start()
    per_thread, threads = 500, 4

    def hammer(index: int) -> None:
        def tagged(outcome: Outcome[Any]) -> Done:
            return Done(str(index), outcome)

        for n in range(per_thread):
            ioloop.submit_and_tell(value_after(n), ref, tagged)

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    got = received(ref, per_thread * threads, timeout=10.0)
    assert len(got) == per_thread * threads
    for index in range(threads):
        values = sorted(d.outcome.unwrap() for d in got if d.tag == str(index))
        assert values == list(range(per_thread))
    ref.stop(timeout=1.0)
