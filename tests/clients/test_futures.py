"""APIFuture semantics that callers rely on (no server needed: the futures are resolved by hand)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading

import pytest

import tinker_actors as tinker
from tinker_actors.futures import APIFuture, TrackedFuture, abandoned


def test_result_timeout_only_stops_waiting_and_a_later_result_returns_the_value() -> None:
    stopped = threading.Event()
    future: APIFuture[int] = APIFuture(on_cancel=stopped.set)
    with pytest.raises(tinker.TinkerTimeoutError):
        future.result(timeout=0.01)
    assert not stopped.is_set() and not future.done()  # the request goes on
    future.raw.set_result(7)
    assert future.result() == 7  # the concurrent.futures convention (and the official SDK's)


def test_result_async_timeout_only_stops_waiting() -> None:
    future: APIFuture[int] = APIFuture()

    async def main() -> int:
        with pytest.raises(tinker.TinkerTimeoutError):
            await future.result_async(timeout=0.01)
        assert not future.done()
        threading.Timer(0.05, lambda: future.raw.set_result(8)).start()
        return await future

    assert asyncio.run(main()) == 8


def test_dropping_the_last_holder_abandons_a_tracked_future() -> None:
    future: APIFuture[int] = APIFuture()
    raw = future.raw
    assert isinstance(raw, TrackedFuture)
    seen: list[str] = []
    raw.add_abandon_callback(lambda: seen.append("abandoned"))
    del future
    gc.collect()
    assert raw.abandoned and seen == ["abandoned"] and not raw.cancelled()  # its producer decides what stops


def test_dropping_the_last_holder_cancels_an_untracked_future() -> None:
    raw: concurrent.futures.Future[int] = concurrent.futures.Future()
    stopped = threading.Event()
    future: APIFuture[int] = APIFuture(raw, on_cancel=stopped.set)
    del future
    gc.collect()
    assert raw.cancelled() and stopped.is_set()


def test_a_done_callback_or_a_mapped_future_keeps_the_request_going() -> None:
    held: APIFuture[int] = APIFuture()
    raw = held.raw
    seen: list[int] = []
    held.add_done_callback(lambda f: seen.append(f.result(0)))
    del held
    gc.collect()
    assert not abandoned(raw)
    raw.set_result(3)
    assert seen == [3]

    source: APIFuture[int] = APIFuture()
    source_raw = source.raw
    mapped = source.map(lambda v: v + 1)
    del source
    gc.collect()
    assert not abandoned(source_raw)  # the mapped future holds its source
    del mapped
    gc.collect()
    assert abandoned(source_raw)  # and nothing holds the mapped future: both are released


def test_a_finished_future_is_not_abandoned_when_dropped() -> None:
    future: APIFuture[int] = APIFuture()
    raw = future.raw
    raw.set_result(1)
    del future
    gc.collect()
    assert not abandoned(raw)


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


def test_future_returns_the_concurrent_future_and_holds_the_request_while_pending() -> None:
    seen: list[str] = []
    api: APIFuture[int] = APIFuture()
    raw = api.raw
    assert isinstance(raw, TrackedFuture)
    raw.add_abandon_callback(lambda: seen.append("abandoned"))
    future = api.future()
    assert future is raw
    del api, raw
    gc.collect()
    assert seen == [] and not future.done()  # only the concurrent future is held: the request goes on
    threading.Timer(0.05, lambda: future.set_result(9)).start()
    (done,), _ = concurrent.futures.wait([future], timeout=5.0)
    assert done.result() == 9


def test_cancelling_the_concurrent_future_cancels_the_request_once() -> None:
    stopped: list[str] = []
    api: APIFuture[int] = APIFuture(on_cancel=lambda: stopped.append("hook"))
    assert api.future().cancel()
    assert stopped == ["hook"]
    api.cancel()  # already cancelled: the hook does not run again
    assert stopped == ["hook"] and api.cancelled()
    with pytest.raises(tinker.ClientStoppedError):
        api.result()


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
