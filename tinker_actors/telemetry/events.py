"""Turning bus events, exceptions and HTTP statistics into wire events (WIRE-PROTOCOL §2.6).

Pure functions: the reporter actor calls them with the next ``event_session_index``. Everything that
leaves the process goes through :func:`json_safe` (no objects the server cannot read) and through
redaction of the config's secrets (an exception message may quote a header or a URL).
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from tinker_actors.errors import find_user_error
from tinker_actors.http.stats import EndpointStats
from tinker_actors.logs import redact_text
from tinker_actors.telemetry.bus import Event
from tinker_actors.types.telemetry import (
    GenericEvent,
    SessionEndEvent,
    SessionStartEvent,
    UnhandledExceptionEvent,
    format_duration,
    new_event_id,
    utc_now,
)

__all__ = [
    "STATS_EVENT",
    "USER_ERROR_EVENT",
    "WireEvent",
    "exception_event",
    "from_bus_event",
    "generic_event",
    "json_safe",
    "session_end",
    "session_start",
    "stats_payload",
]

WireEvent = SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent

USER_ERROR_EVENT = "user_error"
STATS_EVENT = "client_stats"

_MAX_DEPTH = 6
_MAX_TEXT = 4_000
_MAX_TRACEBACK = 16_000


def session_start(index: int) -> SessionStartEvent:
    return SessionStartEvent(event="SESSION_START", event_id=new_event_id(), event_session_index=index,
                             severity="INFO", timestamp=utc_now())


def session_end(index: int, duration: timedelta) -> SessionEndEvent:
    return SessionEndEvent(event="SESSION_END", event_id=new_event_id(), event_session_index=index,
                           severity="INFO", timestamp=utc_now(), duration=format_duration(duration))


def generic_event(index: int, name: str, data: Mapping[str, Any], severity: str = "INFO",
                  timestamp: datetime | None = None, secrets: Iterable[str] = ()) -> GenericEvent:
    safe = json_safe(data, tuple(secrets))
    return GenericEvent.model_validate({
        "event": "GENERIC_EVENT", "event_id": new_event_id(), "event_session_index": index,
        "severity": severity, "timestamp": timestamp or utc_now(), "event_name": name,
        "event_data": safe if isinstance(safe, dict) else {"value": safe},
    })


def exception_event(index: int, error: BaseException, *, where: str | None = None,
                    timestamp: datetime | None = None,
                    secrets: Iterable[str] = ()) -> GenericEvent | UnhandledExceptionEvent:
    """A user's mistake becomes GENERIC_EVENT ``user_error`` (WARNING); anything else UNHANDLED_EXCEPTION.

    Whose mistake it is comes from :func:`~tinker_actors.errors.find_user_error`, which also finds a
    4xx error behind the user's own exception (``raise ValueError(...) from not_found``): the event then
    names the exception raised (``error_type``) and carries the 4xx's ``status_code`` and ``cause_type``.
    """
    secrets = tuple(secrets)
    message = _clip(redact_text(str(error), secrets), _MAX_TEXT)
    user_error = find_user_error(error)
    if user_error is not None:
        data: dict[str, Any] = {"error_type": type(error).__name__, "message": message}
        status = getattr(user_error, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool):
            data["status_code"] = status
        if user_error is not error:
            data["cause_type"] = type(user_error).__name__
        if where:
            data["method"] = where
        return generic_event(index, USER_ERROR_EVENT, data, "WARNING", timestamp, secrets)
    trace = "".join(traceback.format_exception(error))
    return UnhandledExceptionEvent(
        event="UNHANDLED_EXCEPTION", event_id=new_event_id(), event_session_index=index, severity="ERROR",
        timestamp=timestamp or utc_now(), error_type=type(error).__name__, error_message=message,
        traceback=_clip(redact_text(trace, secrets), _MAX_TRACEBACK))


def from_bus_event(index: int, event: Event, secrets: Iterable[str] = ()) -> WireEvent:
    if event.error is not None:
        return exception_event(index, event.error, where=event.data.get("method") if event.data else None,
                               timestamp=event.timestamp, secrets=secrets)
    return generic_event(index, event.name, event.data, event.severity, event.timestamp, secrets)


def stats_payload(stats: Mapping[str, EndpointStats], *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """``{"endpoints": {"asample": {count, errors, retries, p50, p95, p99, ...}}}`` (seconds)."""
    skipped = set(skip)
    return {"endpoints": {name: dataclasses.asdict(figures) for name, figures in sorted(stats.items())
                          if name not in skipped}}


def json_safe(value: Any, secrets: tuple[str, ...] = (), depth: int = 0) -> Any:
    """A copy made of dicts, lists, strings, finite numbers, bools and None; anything else as text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clip(redact_text(value, secrets), _MAX_TEXT)
    if isinstance(value, Enum):
        return json_safe(value.value, secrets, depth)
    if isinstance(value, datetime):
        return value.isoformat()
    if depth >= _MAX_DEPTH:
        return _clip(redact_text(repr(value), secrets), _MAX_TEXT)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item, secrets, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, secrets, depth + 1) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value), secrets, depth + 1)
    return _clip(redact_text(str(value), secrets), _MAX_TEXT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
