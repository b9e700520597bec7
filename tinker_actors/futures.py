"""APIFuture and the poller: every wait ends, with a result or a typed error, and no long wait is silent.

``APIFuture`` wraps a thread-safe ``concurrent.futures.Future``: ``result(timeout)`` from any thread,
``await fut`` from any event loop (through ``asyncio.wrap_future``, never by blocking the loop),
``done()``, callbacks and ``cancel()``. As with ``concurrent.futures`` (and the official SDK), a
``timeout`` only stops *waiting*: the request goes on and a later ``result()`` returns its outcome. What
stops the work is :meth:`APIFuture.cancel`, or nobody holding the APIFuture anymore (it was
garbage-collected), or the bounds of the poller below.

``poll_future`` runs in the IoLoop. Unlike the official SDK it waits between polls (backoff, reset on
progress), reads ``queue_state`` from 408 / try_again answers and reports it to an observer, turns 410
and ``{"error": ...}`` answers into typed errors, announces a wait without progress through a
:class:`~tinker_actors.waits.StallWatch`, and gives up with :class:`NoProgressError`, even when the caller
passed no timeout, once the server has given no useful answer (unreachable, or 5xx / 429 to every poll)
for ``no_progress_timeout``, or has kept answering "pending" for ``pending_timeout``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import pydantic
import structlog

from tinker_actors.call_style import refuse_blocking
from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    ClientStoppedError,
    NoProgressError,
    RequestFailedError,
    TinkerError,
    TinkerTimeoutError,
    error_for_status,
)
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.http.budget import ByteBudget
from tinker_actors.waits import Deadline, StallWatch, WatchSettings
from tinker_actors.wire import CONTENT_TYPE_JSON, ClientCodec, client_codec
from tinker_actors.wire.codec import media_type

__all__ = [
    "APIFuture",
    "PollSettings",
    "QueueStateLog",
    "QueueStateObserver",
    "ResultReader",
    "TrackedFuture",
    "abandoned",
    "detached",
    "fail",
    "on_abandoned",
    "poll_future",
    "resolve",
]

T = TypeVar("T")
U = TypeVar("U")
F = TypeVar("F", bound="APIFuture[Any]")
log = structlog.get_logger("tinker_actors.futures")

QueueStateObserver = Callable[[str, str | None], None]
"""Called with ``(queue_state, reason)`` whenever a pending answer carries a queue state."""

# Answers a poll hands back instead of raising: pending (408), gone (410), and the struggling server (429, 5xx);
# and 200, which the poller reads itself (JSON or protobuf), so the HTTP layer does not decode it.
_POLL_STATUSES = frozenset({200, 408, 410, 429, *range(500, 600)})


class TrackedFuture(concurrent.futures.Future[T]):
    """The thread-safe future behind an :class:`APIFuture`, told when no APIFuture for it is held anymore.

    Whoever produces the outcome decides what "abandoned" stops (:func:`on_abandoned`): a sample is not
    worth sending anymore, while a training request is still sent (its effect on the model was asked for)
    and only the polling for its result stops.
    """

    # One for all, taken briefly. Re-entrant: abandon() may run from an APIFuture's __del__, which the garbage
    # collector can call in a thread that is inside add_abandon_callback already.
    _abandon_lock = threading.RLock()

    def __init__(self) -> None:
        super().__init__()
        self._abandoned = False
        self._abandon_callbacks: list[Callable[[], object]] | None = None

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> None:
        """Nobody will read the outcome anymore (called once, from any thread)."""
        with self._abandon_lock:
            if self._abandoned:
                return
            self._abandoned = True
            callbacks, self._abandon_callbacks = self._abandon_callbacks, None
        for callback in callbacks or ():
            with contextlib.suppress(Exception):
                callback()

    def add_abandon_callback(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (in any thread) once the future is abandoned; at once if it already is."""
        with self._abandon_lock:
            if not self._abandoned:
                if self._abandon_callbacks is None:
                    self._abandon_callbacks = []
                self._abandon_callbacks.append(callback)
                return
        callback()


def abandoned(future: concurrent.futures.Future[Any]) -> bool:
    """Whether nobody holds an APIFuture for ``future`` anymore (only a :class:`TrackedFuture` can tell)."""
    return isinstance(future, TrackedFuture) and future.abandoned


def on_abandoned(future: concurrent.futures.Future[Any], callback: Callable[[], object]) -> None:
    """Call ``callback`` once no APIFuture for ``future`` is held anymore (never for an untracked future)."""
    if isinstance(future, TrackedFuture):
        future.add_abandon_callback(callback)


def _release(future: concurrent.futures.Future[Any], hooks: list[Callable[[], object]]) -> None:
    """An APIFuture's last holder let go of it: stop what was done only to produce its outcome."""
    if future.done():
        return
    if isinstance(future, TrackedFuture):
        future.abandon()  # its producer decides what to stop (on_abandoned)
        return
    # An untracked future is the IoLoop's future of a coroutine that only produces this outcome: stop it.
    if future.cancel():
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook()


_AWAIT_INSTEAD = ("Await the future instead (`await future` in a coroutine), or let the callback hand the "
                  "work to another thread.")


class APIFuture(Generic[T]):
    """The result of a request that is running. Resolves exactly once, with a value or a typed error.

    A ``timeout`` given to :meth:`result` / :meth:`result_async` only stops waiting; :meth:`cancel` stops
    the request on our side; and once nothing holds this object anymore, the work done only to produce
    its result (polling) stops too.
    """

    __slots__ = ("_future", "_hooks", "request_id")

    def __init__(self, future: concurrent.futures.Future[T] | None = None, *,
                 on_cancel: Callable[[], object] | None = None) -> None:
        self._future: concurrent.futures.Future[T] = future if future is not None else TrackedFuture()
        self._hooks: list[Callable[[], object]] = [on_cancel] if on_cancel is not None else []
        self.request_id: str | None = None

    def __del__(self) -> None:
        # The last holder let go (cheaper than weakref.finalize on the sampling hot path). Never raises:
        # at interpreter exit module globals may already be gone, and the runtime's shutdown ends the work.
        with contextlib.suppress(Exception):
            _release(self._future, self._hooks)

    @property
    def raw(self) -> concurrent.futures.Future[T]:
        """The underlying thread-safe future."""
        return self._future

    def future(self) -> concurrent.futures.Future[T]:
        """The underlying ``concurrent.futures.Future`` (the official SDK's ``future()``), for
        ``concurrent.futures.wait`` / ``as_completed`` and libraries that take one. Cancelling it cancels
        the request as :meth:`cancel` does. It holds this APIFuture while it is pending, so a caller that
        keeps only the returned future still gets the outcome (dropping every APIFuture abandons it)."""
        self._future.add_done_callback(self._on_done)
        return self._future

    def _on_done(self, future: concurrent.futures.Future[T]) -> None:
        if future.cancelled():
            self._run_cancel_hooks()

    def _run_cancel_hooks(self) -> None:
        hooks, self._hooks[:] = list(self._hooks), []  # each runs once, however the cancel came
        for hook in hooks:
            hook()

    def set_cancel_hook(self, hook: Callable[[], object]) -> None:
        """What to stop when the caller cancels (the IoLoop task polling for this future)."""
        self._hooks[:] = [hook]

    def result(self, timeout: float | None = None) -> T:
        """Wait for the result. ``timeout`` (seconds) expiring raises :class:`TinkerTimeoutError`; the request
        goes on, and a later ``result()`` returns its outcome (as ``concurrent.futures`` does).

        A finished future answers anywhere (and ``timeout=0`` never waits). Waiting for a pending one in the I/O
        loop's thread or a client actor's thread (a done callback) would wait on the very thread that has to
        answer: that raises :class:`~tinker_actors.call_style.BlockingCallError` (a ``RuntimeError``) at once.
        """
        if (timeout is None or timeout > 0) and not self._future.done():
            refuse_blocking("APIFuture.result() on a pending future", _AWAIT_INSTEAD)
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise self._timeout_error(timeout) from None
        except concurrent.futures.CancelledError:
            raise ClientStoppedError("the request was cancelled") from None

    async def result_async(self, timeout: float | None = None) -> T:
        """Await the result from any event loop without blocking it (``timeout`` as in :meth:`result`)."""
        wrapped = asyncio.wrap_future(self._future)
        try:
            # shield: neither the timeout nor the awaiting task's cancellation may cancel the request itself
            return await asyncio.wait_for(asyncio.shield(wrapped), timeout)
        except TimeoutError:
            if self._future.done():
                return self.result(0)
            raise self._timeout_error(timeout) from None
        except asyncio.CancelledError:
            if self._future.cancelled():
                raise ClientStoppedError("the request was cancelled") from None
            raise

    def _timeout_error(self, timeout: float | None) -> TinkerTimeoutError:
        which = f"request {self.request_id}" if self.request_id else "the request"
        return TinkerTimeoutError(f"no result within {timeout} s; {which} is still running (call result() again "
                                  f"to keep waiting, or cancel() to stop it)")

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    async def coroutine(self) -> T:
        """This future as a coroutine (the official SDK 0.38's), for APIs that take one rather than an awaitable:
        ``asyncio.create_task(sampler.sample(...).coroutine())``."""
        return await self

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the future ended with, or ``None`` after a result. A ``timeout`` only stops waiting
        (:class:`TinkerTimeoutError`); the request goes on. Refused where :meth:`result` is refused."""
        if (timeout is None or timeout > 0) and not self._future.done():
            refuse_blocking("APIFuture.exception() on a pending future", _AWAIT_INSTEAD)
        try:
            return self._future.exception(timeout)
        except concurrent.futures.TimeoutError:
            raise TinkerTimeoutError(f"still pending after {timeout} s") from None
        except concurrent.futures.CancelledError:
            return ClientStoppedError("the request was cancelled")

    def add_done_callback(self, fn: Callable[[APIFuture[T]], None]) -> None:
        """Call ``fn(self)`` when the future ends. The callback holds this future: it keeps the request going."""
        self._future.add_done_callback(lambda _: fn(self))

    def cancel(self) -> bool:
        """Cancel the request on our side: polling stops and waiters get :class:`ClientStoppedError`.

        The server may still run a request it had accepted; cancelling only stops waiting for it (except a sample,
        which is also cancelled on the server when it enables ``sample_cancel_enabled``: docs/guides/async_rl.md)."""
        cancelled = self._future.cancel()
        if cancelled:
            self._run_cancel_hooks()
        return cancelled

    @overload
    def map(self, fn: Callable[[T], U]) -> APIFuture[U]: ...

    @overload
    def map(self, fn: Callable[[T], U], *, into: type[F]) -> F: ...

    def map(self, fn: Callable[[T], Any], *, into: type[APIFuture[Any]] | None = None) -> APIFuture[Any]:
        """A future of ``fn(result)``; errors pass through unchanged. It holds this future (not the reverse),
        so dropping the mapped future releases both. ``into``: the APIFuture class of the mapped future."""
        mapped: APIFuture[Any] = (into or APIFuture)(on_cancel=self.cancel)
        target = mapped._future  # the callback below must not hold the mapped APIFuture itself

        def forward(source: concurrent.futures.Future[T]) -> None:
            if source.cancelled():
                target.cancel()
                return
            error = source.exception()
            try:
                if error is not None:
                    target.set_exception(error)
                else:
                    target.set_result(fn(source.result()))
            except concurrent.futures.InvalidStateError:
                pass
            except Exception as failure:  # the mapping itself failed: that is the outcome
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    target.set_exception(failure)

        self._future.add_done_callback(forward)
        return mapped

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"APIFuture(request_id={self.request_id!r}, {state})"


def detached(work: concurrent.futures.Future[T]) -> APIFuture[T]:
    """An APIFuture of ``work``'s outcome that stops nothing when nobody holds it anymore: for work whose effect
    was asked for, such as creating a model or a sampling session (the official SDK 0.38 finishes those too
    when their future is dropped). ``cancel()`` still cancels ``work``."""
    outcome: APIFuture[T] = APIFuture(on_cancel=work.cancel)
    target = outcome.raw  # the callback must not hold the APIFuture: it would never be released

    def copy(done: concurrent.futures.Future[T]) -> None:
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            fail(target, error)
        else:
            resolve(target, done.result())

    work.add_done_callback(copy)
    return outcome


def resolve(future: concurrent.futures.Future[T], value: T) -> None:
    """Set a result unless the future already ended (cancelled by its caller)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


def fail(future: concurrent.futures.Future[Any], error: BaseException) -> None:
    """Set an error unless the future already ended."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How a pending future is polled and bounded. Built from :class:`Config` by :meth:`from_config`.

    ``no_progress_timeout``: give up once no *useful* answer came for this long (the server unreachable,
    or answering 5xx / 429 to every poll). ``pending_timeout``: give up once the server has kept answering
    "pending" (408 / try_again) for this long in total.
    """

    initial_delay: float = 0.05
    max_delay: float = 1.0
    no_progress_timeout: float = 120.0
    pending_timeout: float = 3600.0
    request_timeout: float = 45.0
    warnings: WatchSettings = field(default_factory=WatchSettings)

    @classmethod
    def from_config(cls, config: Config) -> PollSettings:
        return cls(initial_delay=config.poll_backoff.initial, max_delay=config.poll_backoff.max,
                   no_progress_timeout=config.no_progress_timeout, pending_timeout=config.pending_timeout,
                   request_timeout=config.timeouts.retrieve_future, warnings=WatchSettings.from_config(config))


@dataclass(frozen=True, slots=True)
class ResultReader(Generic[T]):
    """How a poll reads a result whose form depends on the protocol (forward_backward and sample results):
    asked for with ``Accept: accept`` and read by ``decode(body, content_type)``, both from the codec."""

    decode: Callable[[bytes, str | None], T]
    accept: str


_NO_RETRY = RetryPolicy(max_retries=0, deadline=None)
_RETRIEVE_PATH = "/api/v1/retrieve_future"
_SHORTEST_POLL = 0.05  # a poll cut short by a bound still gets this long to answer
_JSON_CODEC = client_codec("0.6.3")
_NO_ANSWER_YET = "no answer yet"  # a StallWatch's last answer before it heard anything (tinker_actors.waits)


async def poll_future(http: HttpLayer, request_id: str, request_type: str,
                      parse: Callable[[Any], T] | ResultReader[T], *,
                      settings: PollSettings, observer: QueueStateObserver | None = None,
                      submitted_at: float | None = None, watch: StallWatch | None = None,
                      deadline: Deadline | None = None,
                      outcome: concurrent.futures.Future[Any] | None = None,
                      codec: ClientCodec | None = None, response_budget: ByteBudget | None = None) -> T:
    """Poll ``retrieve_future`` until the request ends; return the result or raise a typed error.

    ``parse``: reads a JSON result (``parse(result_json)``), or a :class:`ResultReader` for a result the
    protocol may send in another form (protobuf). ``codec``: the protocol's (default 0.6.3), which writes
    the polls. A server may first answer only a finished result's size (``complete_metadata``, protocol
    0.38): room for it is then reserved in ``response_budget`` until the result is read.
    ``watch``: a shared :class:`StallWatch` to feed (a sampling client's); by default the poll has its own.
    ``deadline``: an extra bound that may move while polling (a sampling client's progress clock).
    ``outcome``: the future the result is for; polling stops (:class:`ClientStoppedError`) once it ended
    elsewhere (cancelled) or was abandoned (nobody holds its APIFuture).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    useful_at = started  # the last answer that showed the server handling the request (pending or done)

    pending_answers = True  # the last answer said "pending" (or nothing was heard yet)

    def gives_up_at() -> float:
        """The earliest this wait can end: polls and sleeps never run past it."""
        bound = min(useful_at + settings.no_progress_timeout, started + settings.pending_timeout)
        return min(bound, deadline.at()) if deadline is not None else bound

    def announced_end() -> float:
        """When the wait ends if the server goes on answering as it last did: a server that keeps saying
        "pending" renews the no-progress bound, so then only pending_timeout (or a deadline) ends it."""
        if not pending_answers:
            return gives_up_at()
        bound = started + settings.pending_timeout
        return min(bound, deadline.at()) if deadline is not None else bound

    own_watch = watch is None
    if watch is None:
        watch = StallWatch(request_type, settings.warnings, request_id=request_id, gives_up_at=announced_end)
    # Accepted: pending (a long poll may take a while to say more). A shared watch (a sampling client's) that
    # already heard the server keeps that answer until this poll says something: a sample resubmitted after
    # a 410 is still "HTTP 410" to it, not a new condition to announce on its own.
    if own_watch or watch.last_answer == _NO_ANSWER_YET:
        watch.answer("pending", request_id=request_id)
    wire = codec or _JSON_CODEC
    reader = parse if isinstance(parse, ResultReader) else None
    delay = settings.initial_delay
    iteration = 0
    allow_metadata_only = True
    body = wire.encode_retrieve(request_id, allow_metadata_only=allow_metadata_only)
    last_error: TinkerError | None = None
    reserved = 0  # bytes of response_budget held for a result the server announced (complete_metadata)
    try:
        while True:
            if outcome is not None and (outcome.done() or abandoned(outcome)):
                raise ClientStoppedError(f"request {request_id}: nobody waits for its result anymore; "
                                         f"polling stopped")
            headers = {"X-Tinker-Request-Iteration": str(iteration), "X-Tinker-Request-Type": request_type}
            if reader is not None:
                headers["Accept"] = reader.accept
            if iteration == 0 and submitted_at is not None:
                headers["X-Tinker-Create-Promise-Roundtrip-Time"] = f"{time.monotonic() - submitted_at:.6f}"
            iteration += 1
            # No poll outlives a bound: near one, the poll is cut short so that the bound is kept.
            timeout = min(settings.request_timeout, max(gives_up_at() - loop.time(), _SHORTEST_POLL))
            try:
                response = await http.request(Purpose.FUTURES, "POST", _RETRIEVE_PATH, content=body,
                                              retry=_NO_RETRY, timeout=timeout, headers=headers,
                                              accept_status=_POLL_STATUSES, endpoint="retrieve_future")
            except APIConnectionError as error:
                last_error = error
                pending_answers = False
                watch.answer("timeout" if isinstance(error, APITimeoutError) else "connection error",
                             request_id=request_id, error=error.message)
            else:
                status = response.status_code
                if status == 200:
                    content_type = response.headers.get("content-type")
                    if reader is not None and not _is_json(content_type):
                        return reader.decode(response.content, content_type)  # a protobuf result
                    payload = _json_or_error(response.content, request_id)
                    if isinstance(payload, dict) and "error" in payload:
                        raise RequestFailedError(str(payload.get("error")), request_id=request_id,
                                                 category=str(payload.get("category", "unknown")))
                    if isinstance(payload, dict) and payload.get("status") == "complete_metadata":
                        # Finished, and only its size was sent: reserve room for it, then fetch it at once.
                        if not allow_metadata_only:
                            raise APIResponseValidationError(
                                f"request {request_id}: the server answered complete_metadata to a poll that "
                                f"did not allow it", status_code=200)
                        allow_metadata_only = False
                        body = wire.encode_retrieve(request_id, allow_metadata_only=False)
                        useful_at = loop.time()
                        if response_budget is not None:
                            size = _payload_size(payload)
                            await _reserve(response_budget, size, max(gives_up_at() - loop.time(), _SHORTEST_POLL),
                                           request_id, request_type)
                            reserved = size
                        continue
                    if not (isinstance(payload, dict) and payload.get("type") == "try_again"):
                        if reader is not None:
                            return reader.decode(response.content, content_type)
                        try:
                            return parse(payload)  # type: ignore[operator]
                        except pydantic.ValidationError as invalid:
                            raise APIResponseValidationError(
                                f"request {request_id}: the result does not match the expected type: "
                                f"{invalid.errors(include_url=False)[:3]}", status_code=200) from None
                    useful_at, pending_answers = loop.time(), True
                    _pending(watch, observer, request_id, 200, payload)
                elif status == 408:
                    useful_at, pending_answers = loop.time(), True
                    _pending(watch, observer, request_id, 408, _json_or_none(response.content))
                elif status == 410:
                    raise error_for_status(410, f"request {request_id} is unknown to the server or expired (410)",
                                           body=_json_or_none(response.content))
                else:  # 429 / 5xx: the server is alive but struggling; not progress, so the bound keeps running
                    last_error = error_for_status(status, f"Error code: {status} while polling {request_id}")
                    pending_answers = False
                    watch.answer(f"HTTP {status}", request_id=request_id, status=status)
            now = loop.time()
            if deadline is not None and now >= deadline.at():
                raise deadline.exceeded() from last_error
            if now - useful_at >= settings.no_progress_timeout:
                raise NoProgressError(
                    f"request {request_id} ({request_type}): no useful answer from the server for "
                    f"{now - useful_at:.0f} s (no_progress_timeout {settings.no_progress_timeout:g} s; last answer: "
                    f"{watch.last_answer})", request_id=request_id) from last_error
            if now - started >= settings.pending_timeout:
                raise NoProgressError(
                    f"request {request_id} ({request_type}) was still pending after {now - started:.0f} s "
                    f"(pending_timeout {settings.pending_timeout:g} s; last answer: {watch.last_answer})",
                    request_id=request_id) from last_error
            await asyncio.sleep(min(delay, max(gives_up_at() - now, 0.0)))
            delay = min(delay * 2, settings.max_delay)
    finally:
        if reserved and response_budget is not None:
            response_budget.release(reserved)
        if own_watch:
            watch.close()


async def _reserve(budget: ByteBudget, size: int, within: float, request_id: str, request_type: str) -> None:
    """Hold ``size`` bytes of the response budget, or :class:`NoProgressError` once ``within`` seconds pass."""
    try:
        await asyncio.wait_for(budget.acquire(size), within)
    except TimeoutError:
        raise NoProgressError(f"request {request_id} ({request_type}): no room for its {size}-byte result in the "
                              f"response byte budget ({budget.limit} bytes) within {within:.0f} s",
                              request_id=request_id) from None


def _is_json(content_type: str | None) -> bool:
    """Whether a poll answer is JSON (an untyped body is taken as JSON, as servers of 0.6.3's time send)."""
    kind = media_type(content_type)
    return not kind or kind == CONTENT_TYPE_JSON


def _payload_size(payload: dict[str, Any]) -> int:
    size = payload.get("response_payload_size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def _pending(watch: StallWatch, observer: QueueStateObserver | None, request_id: str, status: int,
             payload: Any) -> None:
    """A "pending" answer (408, or 200 try_again): tell the watch and the queue-state observer."""
    state = reason = None
    if isinstance(payload, dict):
        raw_state, raw_reason = payload.get("queue_state"), payload.get("queue_state_reason")
        state = raw_state if isinstance(raw_state, str) else None
        reason = raw_reason if isinstance(raw_reason, str) else None
    if observer is not None and state is not None:
        observer(state, reason)
    condition = "pending" if state in (None, "active") else f"pending ({state})"
    watch.answer(condition, request_id=request_id, status=status, queue_state=state, queue_state_reason=reason)


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


class QueueStateLog:
    """A debounced queue-state observer (S5): logs a paused state at most once per ``interval`` seconds."""

    def __init__(self, what: str, interval: float = 300.0) -> None:
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
