"""APIFuture semantics that callers rely on (no server needed: the futures are resolved by hand)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import tinker_actors as tinker
from tinker_actors.futures import APIFuture


def test_result_timeout_is_typed_final_and_stops_the_work() -> None:
    stopped = threading.Event()
    future: APIFuture[int] = APIFuture(on_cancel=stopped.set)
    with pytest.raises(tinker.TinkerTimeoutError):
        future.result(timeout=0.01)
    assert stopped.is_set()
    with pytest.raises(TimeoutError):  # the timeout is the future's final outcome
        future.result(0)


def test_exception_timeout_only_stops_waiting() -> None:
    stopped = threading.Event()
    future: APIFuture[int] = APIFuture(on_cancel=stopped.set)
    with pytest.raises(tinker.TinkerTimeoutError):
        future.exception(timeout=0.01)
    assert not stopped.is_set() and not future.done()
    future.raw.set_exception(tinker.NotSentError("x"))
    assert isinstance(future.exception(0), tinker.NotSentError)


def test_cancel_is_a_typed_stop_and_runs_the_hook() -> None:
    stopped = threading.Event()
    future: APIFuture[int] = APIFuture(on_cancel=stopped.set)
    assert future.cancel() and stopped.is_set()
    with pytest.raises(tinker.ClientStoppedError):
        future.result(1)


def test_await_from_any_loop_without_blocking_it() -> None:
    future: APIFuture[int] = APIFuture()
    ticks = 0

    async def main() -> int:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        threading.Timer(0.2, lambda: future.raw.set_result(42)).start()
        value = await future
        task.cancel()
        return value

    assert asyncio.run(main()) == 42
    assert ticks >= 10  # the loop kept running while the future was pending


def test_map_and_callbacks() -> None:
    future: APIFuture[int] = APIFuture()
    doubled = future.map(lambda v: v * 2)
    seen: list[int] = []
    future.add_done_callback(lambda f: seen.append(f.result(0)))
    future.raw.set_result(21)
    assert doubled.result(1) == 42 and seen == [21]
    failing: APIFuture[int] = APIFuture()
    mapped = failing.map(lambda v: v)
    failing.raw.set_exception(tinker.RequestFailedError("boom", request_id="r", category="user"))
    with pytest.raises(tinker.RequestFailedError):
        mapped.result(1)
    assert isinstance(failing.raw, concurrent.futures.Future)
