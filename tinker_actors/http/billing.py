"""Billing pauses: what a request answered 402 does.

Today's service answers 402 when the account cannot pay for a request (credit spent, billing not set up).
As in the official SDK 0.38, that is not a failure at once: the request **pauses** and is sent again with
backoff (``BillingPauseSettings.initial_delay`` doubling to ``max_delay``) until the account can pay, for at
most ``max_pause`` seconds from the first 402 of the incident (``Config.billing_pause.max_pause``, else the
server's ``billing_exception_max_pause_duration_sec``, 3600 s by default); then it fails with
:class:`~tinker_actors.errors.BillingError`. Only the requests answered 402 wait: every other request, the
heartbeats and telemetry go on (each request pauses in its own coroutine; nothing here blocks the loop).

One :class:`BillingPause` per HTTP layer (so per ServiceClient) keeps the incident: it is announced once,
with the server's reason (``billing.paused``, a warning), reminded at most every ``WaitWarnings.repeat_after``
(``billing.still_paused``), and ends when a paused request goes through (``billing.resumed``, info) or when
no 402 came for :data:`INCIDENT_RESET_AFTER`. When it runs out, ``billing.gave_up`` is logged once and every
paused request fails at its next 402.

Runs on the IoLoop (one thread); :attr:`BillingPause.paused` and :meth:`BillingPause.gives_up_at` may be read
from any thread (a blocking call extends its own deadline while its request is paused).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from tinker_actors.config import BillingPauseSettings
from tinker_actors.errors import BillingError

__all__ = ["DEFAULT_MAX_PAUSE", "INCIDENT_RESET_AFTER", "BillingPause"]

DEFAULT_MAX_PAUSE = 3600.0
"""The official SDK's default: a billing incident may pause requests for an hour."""

INCIDENT_RESET_AFTER = 300.0
"""Seconds without a 402 after which the next one starts a new incident (a new announcement, a new bound)."""

_REASON_CHARS = 300

log = structlog.get_logger("tinker_actors.billing")


class BillingPause:
    """The billing incident of one HTTP layer: when it began, what the server said, who is waiting."""

    __slots__ = ("_announced", "_clock", "_first", "_gave_up", "_last", "_log", "_repeat_after", "_server_max_pause",
                 "_settings", "paused", "reason")

    def __init__(self, settings: BillingPauseSettings, *, repeat_after: float, log_enabled: bool = True) -> None:
        self._settings = settings
        self._repeat_after = repeat_after
        self._log = log_enabled
        self._server_max_pause = DEFAULT_MAX_PAUSE
        self._clock = time.monotonic
        self._first: float | None = None  # the first 402 of the incident
        self._last = 0.0  # the latest 402
        self._announced = 0.0
        self._gave_up = False
        self.paused = 0
        """Requests waiting out a 402 right now."""
        self.reason = ""
        """What the server said with the incident's latest 402."""

    def use_server_limit(self, seconds: float | None) -> None:
        """The server's ``billing_exception_max_pause_duration_sec`` (``client/config``); ``None``: the default."""
        self._server_max_pause = DEFAULT_MAX_PAUSE if seconds is None else seconds

    @property
    def max_pause(self) -> float:
        """Seconds an incident may pause requests: ``Config.billing_pause.max_pause``, else the server's limit."""
        configured = self._settings.max_pause
        return configured if configured is not None else self._server_max_pause

    def gives_up_at(self) -> float | None:
        """``time.monotonic()`` at which the current incident's paused requests fail; None without one."""
        return None if self._first is None else self._first + self.max_pause

    async def pause(self, error: BillingError, attempt: int) -> float:
        """Wait before a request answered 402 is sent again (``attempt``: its how-many-th 402, from 1); the
        seconds waited. Raises a :class:`BillingError` once the incident has paused requests for ``max_pause``."""
        wait = self._next_wait(error, attempt)
        self.paused += 1
        try:
            await asyncio.sleep(wait)
        finally:
            self.paused -= 1
        return wait

    def resumed(self) -> None:
        """A request that had been paused went through: the account can pay again, the incident is over."""
        if self._first is None:
            return
        if self._log:
            log.info("billing.resumed", paused_for=round(self._clock() - self._first, 1))
        self._first = None
        self._gave_up = False

    def _next_wait(self, error: BillingError, attempt: int) -> float:
        now = self._clock()
        if self._first is not None and now - self._last > INCIDENT_RESET_AFTER:
            self._first, self._gave_up = None, False  # the last incident is long over: this is a new one
        self._last = now
        self.reason = _reason(error)
        limit = self.max_pause
        if self._first is None:
            self._first = self._announced = now
            if self._log:
                log.warning("billing.paused", reason=self.reason, max_pause=limit, gives_up_in=round(limit, 1),
                            hint="requests answered 402 (billing) wait and retry; other requests go on")
        paused_for = now - self._first
        if paused_for >= limit:
            raise self._gave_up_error(error, paused_for, limit)
        if now - self._announced >= self._repeat_after:
            self._announced = now
            if self._log:
                log.warning("billing.still_paused", reason=self.reason, paused_for=round(paused_for, 1),
                            waiting=self.paused + 1, gives_up_in=round(limit - paused_for, 1))
        backoff = self._settings.initial_delay * 2.0 ** min(max(attempt - 1, 0), 30)
        return max(min(backoff, self._settings.max_delay, limit - paused_for), 0.0)

    def _gave_up_error(self, error: BillingError, paused_for: float, limit: float) -> BillingError:
        if not self._gave_up:
            self._gave_up = True
            if self._log:
                log.error("billing.gave_up", reason=self.reason, paused_for=round(paused_for, 1), max_pause=limit)
        failed = BillingError(
            f"HTTP 402 (billing): requests were paused for {paused_for:.0f} s and the account still cannot pay "
            f"(the limit is {limit:.0f} s: Config.billing_pause.max_pause, else the server's). The server said: "
            f"{self.reason}", response=error.response, body=error.body, status_code=error.status_code or 402)
        failed.request = error.request
        return failed


def _reason(error: BillingError) -> str:
    """The server's words: a ``detail`` / ``message`` / ``error`` text of the body, else the error's message
    (both already free of secrets: the HTTP layer redacts bodies)."""
    body = error.body
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:_REASON_CHARS]
    return error.message[:_REASON_CHARS]
