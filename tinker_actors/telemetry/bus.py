"""The in-process event bus: ``emit`` an :class:`Event`, ``attach`` handlers to see it.

Handlers run synchronously in the emitting thread, so they must be cheap: the telemetry reporter's
handler only tells its actor a message. The handler list is an immutable tuple swapped under a lock,
so ``emit`` takes no lock and a handler attached or detached mid-emit never breaks the iteration. A
handler that raises is logged (once per handler) and skipped: an observer never breaks the caller.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from tinker_actors.types.telemetry import Severity, utc_now

__all__ = ["Event", "EventBus", "Handler", "attach", "default_bus", "detach", "emit"]

log = structlog.get_logger("tinker_actors.telemetry")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. ``session_id`` routes it to that session's reporter (None: local only).

    An event with an ``error`` is an exception report: the reporter turns it into a ``user_error``
    GENERIC_EVENT or an UNHANDLED_EXCEPTION (the traceback is formatted there, not in the caller).
    """

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)
    severity: Severity = "INFO"
    session_id: str | None = None
    error: BaseException | None = None
    timestamp: datetime = field(default_factory=utc_now)


Handler = Callable[[Event], None]


class EventBus:
    """Thread-safe publish/subscribe of :class:`Event` objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: tuple[tuple[int, Handler], ...] = ()
        self._ids = itertools.count(1)
        self._complained: set[int] = set()

    def attach(self, handler: Handler) -> int:
        """Call ``handler(event)`` for every event emitted from now on; returns an id for :meth:`detach`."""
        with self._lock:
            handler_id = next(self._ids)
            self._handlers = (*self._handlers, (handler_id, handler))
            return handler_id

    def detach(self, handler_id: int) -> bool:
        """Stop calling a handler; False if it was not attached."""
        with self._lock:
            kept = tuple(entry for entry in self._handlers if entry[0] != handler_id)
            found = len(kept) != len(self._handlers)
            self._handlers = kept
            self._complained.discard(handler_id)
            return found

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every attached handler, in attach order. Never raises."""
        for handler_id, handler in self._handlers:
            try:
                handler(event)
            except Exception as error:
                self._complain(handler_id, error)

    def handler_count(self) -> int:
        return len(self._handlers)

    def _complain(self, handler_id: int, error: Exception) -> None:
        with self._lock:
            if handler_id in self._complained:
                return
            self._complained.add(handler_id)
        # Once per handler: a broken observer must not flood the host's output.
        log.warning("telemetry.handler_failed", handler_id=handler_id, error_type=type(error).__name__,
                    error=str(error))


default_bus = EventBus()
"""The process-wide bus every session reporter listens on."""


def emit(name: str, data: Mapping[str, Any] | None = None, *, severity: Severity = "INFO",
         session_id: str | None = None) -> None:
    """Emit an event on :data:`default_bus` (uploaded only when ``session_id`` names a live session)."""
    default_bus.emit(Event(name, data if data is not None else {}, severity, session_id))


def attach(handler: Handler) -> int:
    """Attach a handler to :data:`default_bus`."""
    return default_bus.attach(handler)


def detach(handler_id: int) -> bool:
    """Detach a handler from :data:`default_bus`."""
    return default_bus.detach(handler_id)
