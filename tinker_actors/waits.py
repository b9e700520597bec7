"""Waits that announce themselves: the stall watch behind every long wait of the SDK (FEATURES L5).

A :class:`StallWatch` follows one wait (a retried HTTP call, a polled future) or a group of waits (the
samples of one sampling client). Its owner feeds it what happens: every answer from the server
(:meth:`StallWatch.answer`) and every step of real progress (:meth:`StallWatch.progress`). Once the wait
has made no progress for ``WaitWarnings.first_after`` seconds (30 s by default) the watch logs one
``wait.stalled`` warning naming the request type and id, how long it has waited, the last answer (status,
queue state and reason) and when the wait will give up; after that, at most one line per condition (the
kind of the last answer: ``HTTP 500``, ``pending (paused_capacity)``, ``connection error``, ...) every
``WaitWarnings.repeat_after`` seconds (5 minutes), counted per request type across all the waits of one
ServiceClient (:class:`Announcements`): a hundred requests stalled alike log one line, not a hundred. It runs
on a timer of the event loop, so it speaks on time even while its owner sits in a long poll or a backoff.

A watch only announces; its owner enforces the bound and says when that is through ``gives_up_at``. A
watch made with a ``limit`` is also a no-progress clock: it gives up ``limit`` seconds after the last
progress, and that clock runs only while at least one wait is active (:meth:`StallWatch.begin` /
:meth:`StallWatch.end`), so a client left idle never times out.

Everything here runs on the IoLoop (one thread): no locks.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tinker_actors.config import Config
from tinker_actors.errors import NoProgressError, TinkerError
from tinker_actors.logs import get_logger, level_enabled

__all__ = ["Announcements", "Deadline", "StallWatch", "WatchSettings"]

log = get_logger("tinker_actors.waits")

_NO_ANSWER = "no answer yet"


class Deadline(Protocol):
    """A bound on a wait that may move later while the wait runs (a sampling client's progress clock)."""

    def at(self) -> float:
        """The event-loop time (``loop.time()``) at which the wait gives up."""
        ...

    def exceeded(self) -> TinkerError:
        """The error to raise once :meth:`at` has passed."""
        ...


class Announcements:
    """When each condition was last announced, shared by the watches of one ServiceClient: however many
    requests stall the same way at once, one line per request type and condition every ``repeat_after``."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}

    def due(self, key: tuple[str, str], now: float, interval: float) -> bool:
        """Whether ``key`` may be announced now; if so, it counts as announced."""
        last = self._last.get(key)
        if last is not None and now - last < interval:
            return False
        self._last[key] = now
        return True


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """What a watch needs from the :class:`Config`: the intervals, whether warnings are logged at all, and the
    announcements its siblings made (one :class:`Announcements` per ServiceClient, built by ``from_config``)."""

    first_after: float = 30.0
    repeat_after: float = 300.0
    enabled: bool = True
    announcements: Announcements = field(default_factory=Announcements, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> WatchSettings:
        # Checked once here, not per event: unconfigured structlog would print every level.
        warnings = config.wait_warnings
        return cls(warnings.first_after, warnings.repeat_after, level_enabled(config.log_level, "warning"))


class StallWatch:
    """Announces a wait that makes no progress: one warning, then at most one line per condition per interval
    (counted per request type across the watches sharing ``settings.announcements``, so that a hundred requests
    stalled alike log one line, not a hundred).

    ``gives_up_at`` returns the event-loop time at which the owner will give up (``None``: unknown); with
    ``limit`` instead, the watch itself is that bound (``limit`` seconds after the last progress). ``labels``
    are logged with every line (e.g. which sampling client). Create it on the event loop; with
    ``start=True`` (the default) the wait begins at once.
    """

    __slots__ = ("_active", "_condition", "_fields", "_gives_up_at", "_handle", "_labels", "_limit", "_loop",
                 "_request_id", "_request_type", "_settings", "_since", "_started")

    def __init__(self, request_type: str, settings: WatchSettings, *, request_id: str | None = None,
                 gives_up_at: Callable[[], float | None] | None = None, limit: float | None = None,
                 labels: Mapping[str, Any] | None = None, start: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._request_type = request_type
        self._request_id = request_id
        self._settings = settings
        self._gives_up_at = gives_up_at
        self._limit = limit
        self._labels = dict(labels) if labels else {}
        self._active = 0
        self._started = self._since = self._loop.time()
        self._condition = _NO_ANSWER
        self._fields: dict[str, Any] = {}
        self._handle: asyncio.TimerHandle | None = None
        if start:
            self.begin()

    # -- fed by the owner --

    def begin(self) -> None:
        """A wait starts (or joins a shared watch). An idle watch starts its clock now."""
        self._active += 1
        if self._active == 1:
            self._started = self._since = self._loop.time()
            self._condition, self._fields = _NO_ANSWER, {}
            self._schedule(self._since + self._settings.first_after)

    def end(self) -> None:
        """A wait ended. With no wait left the watch falls idle: no timer, no clock."""
        if self._active > 0:
            self._active -= 1
        if self._active == 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """The (single) wait this watch follows is over, whatever the count."""
        self._active = 1
        self.end()

    def progress(self) -> None:
        """Real progress (a result arrived): the no-progress clock starts again."""
        self._since = self._loop.time()

    def answer(self, condition: str, *, request_id: str | None = None, **fields: Any) -> None:
        """The last thing the server said (or did not say). ``condition`` names its kind, for the once per
        interval rule (``"HTTP 500"``, ``"pending (paused_capacity)"``); ``fields`` are logged with it."""
        self._condition = condition
        self._fields = fields
        if request_id is not None:
            self._request_id = request_id

    # -- read by the owner --

    @property
    def active(self) -> int:
        return self._active

    @property
    def last_answer(self) -> str:
        return self._condition

    def stalled_for(self) -> float:
        """Seconds since the last progress (or since the wait began)."""
        return self._loop.time() - self._since

    def at(self) -> float:
        """As a :class:`Deadline` (needs ``limit``): ``limit`` seconds after the last progress."""
        if self._limit is None:
            raise ValueError("this watch has no limit")
        return self._since + self._limit

    def exceeded(self) -> NoProgressError:
        """As a :class:`Deadline`: the error once nothing progressed for ``limit`` seconds."""
        return NoProgressError(
            f"{self._request_type}: no progress for {self.stalled_for():.0f} s (limit {self._limit or 0:.0f} s; "
            f"last answer: {self._condition})", request_id=self._request_id)

    # -- the timer --

    def _schedule(self, when: float) -> None:
        if not self._settings.enabled:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._handle = None
        if self._active == 0:
            return
        settings = self._settings
        now = self._loop.time()
        if now - self._since < settings.first_after:
            self._schedule(self._since + settings.first_after)  # progress since: not stalled (yet)
            return
        if settings.announcements.due((self._request_type, self._condition), now, settings.repeat_after):
            self._announce(now)
        # Check again soon: a new condition is announced within ``first_after``, a known one waits its turn.
        self._schedule(now + min(settings.first_after, settings.repeat_after))

    def _announce(self, now: float) -> None:
        gives_up = self._gives_up_at() if self._gives_up_at is not None else (
            self._since + self._limit if self._limit is not None else None)
        event: dict[str, Any] = {
            "request_type": self._request_type,
            "request_id": self._request_id,
            **self._labels,
            "waited": round(now - self._started, 1),
            "no_progress_for": round(now - self._since, 1),
            "last_answer": self._condition,
            **self._fields,
        }
        if self._active > 1:
            event["waiting"] = self._active
        if gives_up is None:
            event["gives_up_in"] = None
        else:
            remaining = max(0.0, gives_up - now)
            event["gives_up_in"] = round(remaining, 1)
            event["gives_up_at"] = datetime.datetime.fromtimestamp(
                time.time() + remaining, datetime.UTC).isoformat(timespec="seconds")
        log.warning("wait.stalled", **event)
