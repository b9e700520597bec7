"""Exception capture at the public API boundary.

:func:`capture_exceptions` wraps every public method of a client class (ServiceClient,
TrainingClient, SamplingClient, RestClient). An exception raised by the call, or later by the
:class:`~tinker_actors.futures.APIFuture` it returned, is reported to the session's telemetry (before the
client's ServiceClient has a session: to its session-less telemetry, if a REST client started one) and then
left exactly as it was: the wrapper re-raises the same object at once and never waits for the
report (the official SDK flushes synchronously here and, with the endpoint down, holds the user's
error for ~30 s). Reporting is one dictionary lookup and one message.

An exception is reported once even when it crosses several wrapped calls (``create_..._client``
calls ``create_..._client_future``). :class:`~tinker_actors.errors.ClientStoppedError` is not
reported: it is how pending work ends when the user closes the client.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tinker_actors.errors import ClientStoppedError
from tinker_actors.futures import APIFuture
from tinker_actors.telemetry.session import SessionTelemetry, telemetry_for

__all__ = ["capture_exceptions", "report_exception"]

C = TypeVar("C", bound=type)

_MARK = "_tinker_telemetry_reported"
_WRAPPED = "__tinker_telemetry_wrapped__"


def capture_exceptions(cls: C) -> C:
    """Wrap each public plain or ``async`` method of ``cls`` (idempotent). Returns ``cls``."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member) or getattr(member, _WRAPPED, False):
            continue
        wrapper = _wrap_async(member) if inspect.iscoroutinefunction(member) else _wrap_sync(member)
        setattr(wrapper, _WRAPPED, True)
        setattr(cls, name, wrapper)
    return cls


def report_exception(client: object, error: BaseException, method: str) -> None:
    """Report ``error`` to the telemetry of ``client``'s session, once. Never raises."""
    if isinstance(error, ClientStoppedError) or getattr(error, _MARK, False):
        return
    telemetry = _telemetry_of(client)
    if telemetry is None or not telemetry.enabled:
        return
    # An exception type with __slots__ cannot be marked: it may be reported twice, that is all.
    with contextlib.suppress(AttributeError):
        setattr(error, _MARK, True)
    telemetry.log_exception(error, method=method)


def _telemetry_of(client: object) -> SessionTelemetry | None:
    context = getattr(client, "_context", None)
    session_id = getattr(context, "session_id", None)
    if isinstance(session_id, str) and session_id:
        return telemetry_for(session_id)
    # No session (yet): the ServiceClient's session-less telemetry, which its REST clients start (ClientContext).
    sessionless = getattr(context, "sessionless_telemetry", None)
    return sessionless if isinstance(sessionless, SessionTelemetry) else None


def _watch_future(client: object, future: APIFuture[Any], method: str) -> None:
    # No telemetry for a session that exists: nothing to watch. No session yet: the call may be the one creating
    # it (a client-creation future), so its outcome is watched and reported once the session is there.
    has_session = bool(getattr(getattr(client, "_context", None), "session_id", None))
    if has_session and _telemetry_of(client) is None:
        return

    def on_done(raw: concurrent.futures.Future[Any]) -> None:
        if raw.cancelled():
            return
        error = raw.exception()
        if error is not None:
            report_exception(client, error, method)

    future.raw.add_done_callback(on_done)


def _wrap_sync(fn: Callable[..., Any]) -> Callable[..., Any]:
    method = fn.__qualname__

    @functools.wraps(fn)
    def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(self, *args, **kwargs)
        except Exception as error:
            report_exception(self, error, method)
            raise
        if isinstance(result, APIFuture):
            _watch_future(self, result, method)
        return result

    return wrapper


def _wrap_async(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    method = fn.__qualname__

    @functools.wraps(fn)
    async def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await fn(self, *args, **kwargs)
        except Exception as error:
            report_exception(self, error, method)
            raise
        if isinstance(result, APIFuture):
            _watch_future(self, result, method)
        return result

    return wrapper
