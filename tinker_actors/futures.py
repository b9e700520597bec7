"""APIFuture and the poller: every wait ends, with a result or a typed error.

``APIFuture`` wraps a thread-safe ``concurrent.futures.Future``: ``result(timeout)`` from any thread,
``await fut`` from any event loop (through ``asyncio.wrap_future``, never by blocking the loop),
``done()``, callbacks and ``cancel()``. A caller's timeout or cancellation also stops the polling that
was started for it (the official SDK keeps polling in the background).

``poll_future`` runs in the IoLoop. Unlike the official SDK it waits between polls (backoff, reset on
progress), reads ``queue_state`` from 408 / try_again answers and reports it to an observer, turns 410
and ``{"error": ...}`` answers into typed errors, and gives up with :class:`NoProgressError` when the
server was unreachable for ``no_progress_timeout`` or the request stayed pending for
``pending_timeout``, even when the caller passed no timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pydantic
import structlog

from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    ClientStoppedError,
    NoProgressError,
    RequestFailedError,
    TinkerError,
    TinkerTimeoutError,
    error_for_status,
)
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.types import FutureRetrieveRequest, encode_json

__all__ = ["APIFuture", "PollSettings", "QueueStateLog", "QueueStateObserver", "fail", "poll_future", "resolve"]

T = TypeVar("T")
U = TypeVar("U")
log = structlog.get_logger("tinker_actors.futures")

QueueStateObserver = Callable[[str, str | None], None]
"""Called with ``(queue_state, reason)`` whenever a pending answer carries a queue state."""

_PENDING_STATUSES = frozenset({408, 410, 429, 500, 502, 503, 504})


class APIFuture(Generic[T]):
    """The result of a request that is running. Resolves exactly once, with a value or a typed error."""

    __slots__ = ("_future", "_on_cancel", "request_id")

    def __init__(self, future: concurrent.futures.Future[T] | None = None, *,
                 on_cancel: Callable[[], object] | None = None) -> None:
        self._future: concurrent.futures.Future[T] = future if future is not None else concurrent.futures.Future()
        self._on_cancel = on_cancel
        self.request_id: str | None = None

    @property
    def raw(self) -> concurrent.futures.Future[T]:
        """The underlying thread-safe future."""
        return self._future

    def set_cancel_hook(self, hook: Callable[[], object]) -> None:
        """What to stop when the caller cancels or times out (the IoLoop task polling for this future)."""
        self._on_cancel = hook

    def result(self, timeout: float | None = None) -> T:
        """Wait for the result. ``timeout`` (seconds) expiring raises :class:`TinkerTimeoutError` and
        stops the polling started for this future; the same error is then its final outcome."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            self._give_up(timeout)
            return self._future.result(0)
        except concurrent.futures.CancelledError:
            raise ClientStoppedError("the request was cancelled") from None

    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result from any event loop without blocking it."""
        wrapped = asyncio.wrap_future(self._future)
        try:
            return await asyncio.wait_for(asyncio.shield(wrapped), timeout)
        except TimeoutError:
            if self._future.done():
                return self._future.result(0)
            self._give_up(timeout)
            return self._future.result(0)
        except asyncio.CancelledError:
            if self._future.cancelled():
                raise ClientStoppedError("the request was cancelled") from None
            raise

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the future ended with, or ``None`` after a result. Unlike :meth:`result`, a
        ``timeout`` here only stops waiting (:class:`TinkerTimeoutError`); the request goes on."""
        try:
            return self._future.exception(timeout)
        except concurrent.futures.TimeoutError:
            raise TinkerTimeoutError(f"still pending after {timeout} s") from None
        except concurrent.futures.CancelledError:
            return ClientStoppedError("the request was cancelled")

    def add_done_callback(self, fn: Callable[[APIFuture[T]], None]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def cancel(self) -> bool:
        """Cancel the request on our side: polling stops and waiters get :class:`ClientStoppedError`.

        The server may still run a request it had accepted; cancelling only stops waiting for it."""
        cancelled = self._future.cancel()
        if cancelled and self._on_cancel is not None:
            self._on_cancel()
        return cancelled

    def map(self, fn: Callable[[T], U]) -> APIFuture[U]:
        """A future of ``fn(result)``; errors pass through unchanged."""
        mapped: APIFuture[U] = APIFuture(on_cancel=self.cancel)

        def forward(source: concurrent.futures.Future[T]) -> None:
            if source.cancelled():
                mapped._future.cancel()
                return
            error = source.exception()
            try:
                if error is not None:
                    mapped._future.set_exception(error)
                else:
                    mapped._future.set_result(fn(source.result()))
            except concurrent.futures.InvalidStateError:
                pass
            except Exception as failure:  # the mapping itself failed: that is the outcome
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    mapped._future.set_exception(failure)

        self._future.add_done_callback(forward)
        return mapped

    def _give_up(self, timeout: float | None) -> None:
        error = TinkerTimeoutError(f"no result within {timeout} s; polling for it was stopped")
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self._future.set_exception(error)
        if self._on_cancel is not None:
            self._on_cancel()

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"APIFuture(request_id={self.request_id!r}, {state})"


def resolve(future: concurrent.futures.Future[T], value: T) -> None:
    """Set a result unless the future already ended (cancelled or timed out by its caller)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


def fail(future: concurrent.futures.Future[Any], error: BaseException) -> None:
    """Set an error unless the future already ended."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How a pending future is polled. Built from :class:`Config` by :meth:`from_config`."""

    initial_delay: float = 0.05
    max_delay: float = 1.0
    no_progress_timeout: float = 120.0
    pending_timeout: float = 3600.0
    request_timeout: float = 45.0

    @classmethod
    def from_config(cls, config: Config) -> PollSettings:
        return cls(initial_delay=config.poll_backoff.initial, max_delay=config.poll_backoff.max,
                   no_progress_timeout=config.no_progress_timeout, request_timeout=config.timeouts.retrieve_future,
                   pending_timeout=max(config.no_progress_timeout, 3600.0))


_NO_RETRY = RetryPolicy(max_retries=0, deadline=None)
_RETRIEVE_PATH = "/api/v1/retrieve_future"


async def poll_future(http: HttpLayer, request_id: str, request_type: str, parse: Callable[[Any], T], *,
                      settings: PollSettings, observer: QueueStateObserver | None = None,
                      submitted_at: float | None = None) -> T:
    """Poll ``retrieve_future`` until the request ends; return ``parse(result_json)`` or raise a typed error."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    last_answer = started  # the last time the server answered at all
    delay = settings.initial_delay
    iteration = 0
    body = encode_json(FutureRetrieveRequest(request_id=request_id))
    last_error: TinkerError | None = None
    while True:
        headers = {"X-Tinker-Request-Iteration": str(iteration), "X-Tinker-Request-Type": request_type}
        if iteration == 0 and submitted_at is not None:
            headers["X-Tinker-Create-Promise-Roundtrip-Time"] = f"{time.monotonic() - submitted_at:.6f}"
        iteration += 1
        try:
            response = await http.request(Purpose.FUTURES, "POST", _RETRIEVE_PATH, content=body, retry=_NO_RETRY,
                                          timeout=settings.request_timeout, headers=headers,
                                          accept_status=_PENDING_STATUSES, endpoint="retrieve_future")
        except APIConnectionError as error:
            last_error = error
            now = loop.time()
            if now - last_answer >= settings.no_progress_timeout:
                raise NoProgressError(
                    f"request {request_id}: the server was unreachable for {now - last_answer:.0f} s "
                    f"(last error: {error.message})", request_id=request_id) from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.max_delay)
            continue
        now = loop.time()
        last_answer = now
        status = response.status_code
        if status == 200:
            payload = _json_or_error(response.content, request_id)
            if isinstance(payload, dict) and "error" in payload:
                raise RequestFailedError(str(payload.get("error")), request_id=request_id,
                                         category=str(payload.get("category", "unknown")))
            if isinstance(payload, dict) and payload.get("type") == "try_again":
                _report_queue_state(observer, payload)
            else:
                try:
                    return parse(payload)
                except pydantic.ValidationError as invalid:
                    raise APIResponseValidationError(
                        f"request {request_id}: the result does not match the expected type: "
                        f"{invalid.errors(include_url=False)[:3]}", status_code=200) from None
        elif status == 410:
            raise error_for_status(410, f"request {request_id} is unknown to the server or expired (410)",
                                   body=_json_or_none(response.content))
        elif status == 408:
            payload = _json_or_none(response.content)
            if isinstance(payload, dict):
                _report_queue_state(observer, payload)
        else:  # 429 / 5xx on a poll: the server is alive but struggling; wait and ask again
            last_error = error_for_status(status, f"Error code: {status} while polling {request_id}")
        if now - started >= settings.pending_timeout:
            raise NoProgressError(
                f"request {request_id} was still pending after {now - started:.0f} s", request_id=request_id
            ) from last_error
        await asyncio.sleep(delay)
        delay = min(delay * 2, settings.max_delay)


def _json_or_error(content: bytes, request_id: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise APIResponseValidationError(f"request {request_id}: the result is not valid JSON",
                                         status_code=200) from None


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _report_queue_state(observer: QueueStateObserver | None, payload: dict[str, Any]) -> None:
    state = payload.get("queue_state")
    if observer is not None and isinstance(state, str):
        reason = payload.get("queue_state_reason")
        observer(state, reason if isinstance(reason, str) else None)


class QueueStateLog:
    """A debounced queue-state observer (S5): logs a paused state at most once per ``interval`` seconds."""

    def __init__(self, what: str, interval: float = 60.0) -> None:
        self._what = what
        self._interval = interval
        self._last_logged = -float("inf")
        self.last_state: str = "active"

    def __call__(self, state: str, reason: str | None) -> None:
        self.last_state = state
        if state == "active":
            return
        now = time.monotonic()
        if now - self._last_logged < self._interval:
            return
        self._last_logged = now
        why = {"paused_rate_limit": "rate limit hit", "paused_capacity": "out of capacity"}.get(state, "unknown")
        log.warning("queue.paused", what=self._what, state=state, reason=reason or why)
