"""TelemetryReporter: one actor per session that batches events and uploads them from the IoLoop.

::

    root
    └── telemetry_reporter     Supervisor (one_for_one), the runtime's slot
        ├── session-<id>*      TelemetryReporter, transient, one per ServiceClient session
        └── sessionless-<uuid>*  TelemetryReporter, transient, one per ServiceClient whose REST calls
                                 ran without a session (protocol 0.38)

Events reach it as messages (:class:`Record`, told by its bus handler, which does nothing else).
It keeps a bounded queue (``max_queue``; overflow is dropped and counted) and sends batches of at
most ``batch_size`` every ``flush_interval`` seconds, or at once when ``flush_threshold`` events
wait. One batch is on the wire at a time, so events arrive in order; a failed batch is tried again
after a doubling wait, at most ``upload_attempts`` times, then given up and counted as failed
(later batches are not held hostage forever, unlike the official SDK's endless retry).

An event counts as delivered only when the server answered ``{"status": "accepted"}``
(:mod:`tinker_actors.telemetry.ledger`). When the session ends the reporter queues SESSION_END and
a last ``client_stats`` event, then spends at most ``drain_timeout`` seconds sending what is left;
whatever is still unsent then is counted as failed and the program goes on.

A batch is written as the session's protocol writes it (:class:`TelemetryWire`, from the
ServiceClient's ProtocolProfile): through its codec, naming its ``sdk_version``, and with this
process's ``process_uuid`` where the protocol sends one (0.38).

A session-less reporter (``SessionTelemetryState.sessionless``, as the official 0.38 SDK's REST-only
clients) reports under a ``sessionless-<uuid4>`` id and sends only what is logged or captured: no
SESSION_START, no SESSION_END, no ``client_stats`` (the HTTP figures are the session's to report).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import platform
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from pydantic import BaseModel
from pykka import ActorDeadError

from supervisors import ExitKind, ExitReason, SupervisedActor
from tinker_actors.config import RetryPolicy, TelemetrySettings
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.http.stats import EndpointStats
from tinker_actors.logs import level_enabled
from tinker_actors.runtime.ioloop import Handle, IoLoop, Outcome
from tinker_actors.telemetry.bus import Event, EventBus
from tinker_actors.telemetry.events import (
    STATS_EVENT,
    WireEvent,
    from_bus_event,
    generic_event,
    session_end,
    session_start,
    stats_payload,
)
from tinker_actors.telemetry.ledger import DeliveryLedger
from tinker_actors.telemetry.process import process_uuid
from tinker_actors.types.telemetry import TelemetryResponse, TelemetrySendRequest

__all__ = [
    "TELEMETRY_ENDPOINT",
    "FlushNow",
    "Record",
    "RetryDue",
    "SessionTelemetryState",
    "StatsReady",
    "StatsTick",
    "TelemetryReporter",
    "TelemetryWire",
    "UploadDone",
]

log = structlog.get_logger("tinker_actors.telemetry")

TELEMETRY_ENDPOINT = "telemetry"
_PATH = "/api/v1/telemetry"
_ONE_TRY = RetryPolicy(max_retries=0, deadline=None)  # the reporter does its own, bounded, retrying
_STATS_WAIT_AT_SHUTDOWN = 0.2


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Record:
    """An event from the bus, for this session."""

    event: Event


@dataclass(frozen=True, slots=True)
class FlushNow:
    """Timer tick (and the handle's ``flush()``): send a batch if none is on the wire."""


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The wait before trying the held batch again is over."""


@dataclass(frozen=True, slots=True)
class StatsTick:
    """Time to report the per-endpoint HTTP figures."""


@dataclass(frozen=True, slots=True)
class StatsReady:
    """The HTTP figures, read on the IoLoop (the only thread that writes them)."""

    stats: dict[str, EndpointStats] | None


@dataclass(frozen=True, slots=True)
class UploadDone:
    """An upload attempt ended; ``error`` is None when the server acknowledged the batch."""

    number: int
    error: str | None


# ---- what outlives one reporter incarnation ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TelemetryWire:
    """How the session's protocol writes a batch (the ServiceClient fills it from its ProtocolProfile)."""

    encode: Callable[[BaseModel], bytes]
    """The protocol's JSON body rules (``ProtocolProfile.codec.encode_json``)."""
    sdk_version: str
    """The ``sdk_version`` the session was created with."""
    sends_process_uuid: bool
    """Whether batches carry :func:`~tinker_actors.telemetry.process.process_uuid` (0.38 does)."""


@dataclass(frozen=True, slots=True)
class SessionTelemetryState:
    """Everything a reporter needs; shared by its restarts (the ledger carries the counters)."""

    session_id: str
    http: HttpLayer
    ioloop: IoLoop
    settings: TelemetrySettings
    secrets: tuple[str, ...]
    wire: TelemetryWire
    bus: EventBus
    ledger: DeliveryLedger
    started_at: float  # time.monotonic() at session start, for SESSION_END's duration
    sessionless: bool = False
    """No session behind it: no SESSION_START/SESSION_END and no ``client_stats`` events."""

    @property
    def sends_stats(self) -> bool:
        return self.settings.stats_interval is not None and not self.sessionless


@dataclass
class _Batch:
    number: int
    events: list[WireEvent]
    attempts: int = 0


# ---- the actor ------------------------------------------------------------------------------------

class TelemetryReporter(SupervisedActor):
    """Owns one session's queue, held batch and timers. Never blocks except while draining at exit."""

    def __init__(self, state: SessionTelemetryState) -> None:
        super().__init__()
        self._state = state
        self._settings = state.settings
        self._queue: deque[WireEvent] = deque()
        self._held: _Batch | None = None  # failed once, waiting for RetryDue (sent before the queue)
        self._waiting_retry = False
        self._in_flight: tuple[_Batch, Handle] | None = None
        self._batch_numbers = 0
        self._handler_id: int | None = None
        self._last_stats_total = -1
        self._given_up_logged = False
        self._dropped_logged = False
        self._rng = random.Random()

    # -- lifecycle --

    def on_init(self) -> None:
        state = self._state
        if not state.ledger.start_sent and not state.sessionless:
            state.ledger.start_sent = True
            self._enqueue(session_start(state.ledger.next_index()))
        self._handler_id = state.bus.attach(_forwarder(state.session_id, self.actor_ref, state.ledger))
        self.send_interval(self._settings.flush_interval, FlushNow())
        if state.sends_stats and self._settings.stats_interval is not None:
            self.send_interval(self._settings.stats_interval, StatsTick())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Record):
            self._record(message.event)
        elif isinstance(message, FlushNow):
            self._send_next()
        elif isinstance(message, UploadDone):
            self._upload_done(message)
        elif isinstance(message, RetryDue):
            self._waiting_retry = False
            self._send_next()
        elif isinstance(message, StatsTick):
            self._read_stats()
        elif isinstance(message, StatsReady):
            self._stats_ready(message.stats)
        return None

    def on_terminate(self, reason: ExitReason) -> None:
        state = self._state
        if self._handler_id is not None:
            state.bus.detach(self._handler_id)
        if reason.kind is ExitKind.NORMAL:
            self._drain()
        else:
            # A crashed reporter's queue may be inconsistent; its successor starts afresh.
            state.ledger.failed(self._unsettled())

    # -- queueing --

    def _record(self, event: Event) -> None:
        try:
            wire = from_bus_event(self._state.ledger.next_index(), event, self._state.secrets)
        except Exception as error:  # an unencodable payload must not crash the reporter
            self._state.ledger.failed(1)
            self._log("debug", "telemetry.event_unencodable", event_name=event.name, error=str(error))
            return
        self._enqueue(wire, counted=True)

    def _enqueue(self, wire: WireEvent, *, counted: bool = False, forced: bool = False) -> None:
        """Queue an event (``counted``: the bus handler already counted it as emitted; ``forced``:
        past the bound, for the one SESSION_END that says the session is over)."""
        ledger = self._state.ledger
        if not counted:
            ledger.emitted()
        if len(self._queue) >= self._settings.max_queue and not forced:
            ledger.dropped()
            if not self._dropped_logged:
                self._dropped_logged = True
                self._log("warning", "telemetry.queue_full", session_id=self._state.session_id,
                            max_queue=self._settings.max_queue, hint="newer events are dropped and counted")
            return
        self._queue.append(wire)
        if len(self._queue) >= self._settings.flush_threshold:
            self._send_next()

    def _take_batch(self) -> _Batch | None:
        if self._held is not None:
            return self._held
        if not self._queue:
            return None
        size = min(self._settings.batch_size, len(self._queue))
        self._batch_numbers += 1
        return _Batch(self._batch_numbers, [self._queue.popleft() for _ in range(size)])

    # -- uploading --

    def _send_next(self) -> None:
        if self._in_flight is not None or self._waiting_retry:
            return
        batch = self._take_batch()
        if batch is None:
            return
        self._held = None
        number = batch.number
        try:
            handle = self._state.ioloop.submit_and_tell(
                _upload(self._state, batch.events, self._state.http.config.timeouts.telemetry),
                self.actor_ref, lambda outcome: UploadDone(number, _error_text(outcome)))
        except Exception as error:  # the IoLoop or the HTTP layer is gone: nothing can be sent
            self._held = batch
            self._log("debug", "telemetry.cannot_submit", error=str(error))
            return
        self._in_flight = (batch, handle)

    def _upload_done(self, message: UploadDone) -> None:
        if self._in_flight is None or self._in_flight[0].number != message.number:
            return
        batch = self._in_flight[0]
        self._in_flight = None
        self._settle(batch, message.error)
        if self._held is None and len(self._queue) >= self._settings.flush_threshold:
            self._send_next()

    def _settle(self, batch: _Batch, error: str | None) -> None:
        """Book one attempt's result; hold the batch for a retry, or give it up."""
        ledger = self._state.ledger
        batch.attempts += 1
        if error is None:
            ledger.attempt(acknowledged_events=len(batch.events))
            return
        ledger.attempt(acknowledged_events=None)
        if batch.attempts >= self._settings.upload_attempts:
            ledger.failed(len(batch.events))
            # One line the first time, not one traceback per try (RELIABILITY.md).
            if not self._given_up_logged:
                self._given_up_logged = True
                self._log("warning", "telemetry.batch_given_up", session_id=self._state.session_id,
                            events=len(batch.events), attempts=batch.attempts, error=error)
            return
        self._held = batch
        self._waiting_retry = True
        self.send_after(self._backoff(batch.attempts), RetryDue())

    def _backoff(self, attempts: int) -> float:
        nominal = min(self._settings.retry_base_delay * 2.0 ** (attempts - 1), self._settings.retry_max_delay)
        return nominal * (0.9 + 0.2 * self._rng.random())

    def _log(self, level: str, event: str, **fields: Any) -> None:
        # Checked first: an unconfigured structlog prints every level, and the host did not ask.
        if level_enabled(self._state.http.config.log_level, level):
            getattr(log, level)(event, **fields)

    # -- statistics --

    def _read_stats(self) -> None:
        try:
            self._state.ioloop.submit_and_tell(_read_stats(self._state.http), self.actor_ref,
                                               lambda outcome: StatsReady(outcome.value if outcome.ok else None))
        except Exception:
            return

    def _stats_ready(self, stats: dict[str, EndpointStats] | None) -> None:
        if not stats:
            return
        # Only when something happened besides our own uploads: an idle session sends nothing.
        total = sum(figures.count for name, figures in stats.items() if name != TELEMETRY_ENDPOINT)
        if total == self._last_stats_total:
            return
        self._last_stats_total = total
        payload = stats_payload(stats, skip=(TELEMETRY_ENDPOINT,))
        self._enqueue(generic_event(self._state.ledger.next_index(), STATS_EVENT, payload))

    # -- the end --

    def _drain(self) -> None:
        state, settings = self._state, self._settings
        deadline = time.monotonic() + settings.drain_timeout
        if state.sends_stats:
            self._final_stats(deadline)
        if not state.ledger.end_sent and not state.sessionless:
            state.ledger.end_sent = True
            duration = timedelta(seconds=time.monotonic() - state.started_at)
            self._enqueue(session_end(state.ledger.next_index(), duration), forced=True)
        self._finish_in_flight(deadline)
        batches: list[list[WireEvent]] = [self._held.events] if self._held is not None else []
        self._held = None
        while self._queue:
            size = min(settings.batch_size, len(self._queue))
            batches.append([self._queue.popleft() for _ in range(size)])
        acknowledged: list[int] = []
        attempts = [0, 0]  # tries, failed tries
        remaining = deadline - time.monotonic()
        if batches and remaining > 0:
            try:
                future = state.ioloop.submit(_drain(state, batches, deadline, acknowledged, attempts))
                concurrent.futures.wait([future], timeout=remaining + 0.05)
                future.cancel()
            except Exception as error:
                self._log("debug", "telemetry.drain_not_possible", error=str(error))
        for count in list(acknowledged):
            state.ledger.attempt(acknowledged_events=count)
        for _ in range(attempts[1]):
            state.ledger.attempt(acknowledged_events=None)
        unsent = state.ledger.close()
        if unsent:
            self._log("info", "telemetry.unsent_at_exit", session_id=state.session_id, events=unsent,
                     drain_timeout=settings.drain_timeout)

    def _final_stats(self, deadline: float) -> None:
        try:
            future = self._state.ioloop.submit(_read_stats(self._state.http))
            stats = future.result(max(0.0, min(_STATS_WAIT_AT_SHUTDOWN, deadline - time.monotonic())))
        except Exception:
            return
        self._stats_ready(stats)

    def _finish_in_flight(self, deadline: float) -> None:
        if self._in_flight is None:
            return
        batch, handle = self._in_flight
        self._in_flight = None
        concurrent.futures.wait([handle.future], timeout=max(0.0, deadline - time.monotonic()))
        if not handle.future.done():
            handle.cancel()
        outcome = Outcome.of(handle.future)
        if outcome.ok:
            self._settle(batch, None)
        else:
            self._state.ledger.attempt(acknowledged_events=None)
            self._held = batch  # try it once more inside the drain

    def _unsettled(self) -> int:
        held = len(self._held.events) if self._held is not None else 0
        flying = len(self._in_flight[0].events) if self._in_flight is not None else 0
        return len(self._queue) + held + flying


# ---- IoLoop side ----------------------------------------------------------------------------------

def _forwarder(session_id: str, ref: Any, ledger: DeliveryLedger) -> Callable[[Event], None]:
    """The bus handler: a filter and a tell, nothing else (it runs in the emitting thread)."""

    def forward(event: Event) -> None:
        if event.session_id != session_id:
            return
        ledger.emitted()
        if ledger.closed:
            return
        try:
            ref.tell(Record(event))
        except ActorDeadError:
            ledger.failed(1)

    return forward


def _body(state: SessionTelemetryState, events: list[WireEvent]) -> bytes:
    wire = state.wire
    fields: dict[str, Any] = {"events": events, "platform": platform.system(), "sdk_version": wire.sdk_version,
                              "session_id": state.session_id}
    if wire.sends_process_uuid:
        fields["process_uuid"] = process_uuid()
    return wire.encode(TelemetrySendRequest.model_validate(fields))


async def _upload(state: SessionTelemetryState, events: list[WireEvent], timeout: float) -> None:
    """One attempt; returns only when the server acknowledged the batch (``{"status":"accepted"}``)."""
    await state.http.request(Purpose.TELEMETRY, "POST", _PATH, content=_body(state, events),
                             response_model=TelemetryResponse, retry=_ONE_TRY, timeout=timeout,
                             endpoint=TELEMETRY_ENDPOINT)


async def _drain(state: SessionTelemetryState, batches: list[list[WireEvent]], deadline: float,
                 acknowledged: list[int], attempts: list[int]) -> None:
    """Send the batches in order, retrying quickly, never past ``deadline`` (time.monotonic)."""
    per_attempt = state.http.config.timeouts.telemetry
    for events in batches:
        tries = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            attempts[0] += 1
            try:
                await _upload(state, events, min(per_attempt, remaining))
            except Exception:
                attempts[1] += 1
                tries += 1
                if tries >= state.settings.upload_attempts:
                    break
                await asyncio.sleep(min(0.1 * 2.0 ** tries, 1.0, max(0.0, deadline - time.monotonic())))
                continue
            acknowledged.append(len(events))
            break


async def _read_stats(http: HttpLayer) -> dict[str, EndpointStats]:
    return http.stats()


def _error_text(outcome: Outcome[None]) -> str | None:
    if outcome.ok:
        return None
    error = outcome.error
    return f"{type(error).__name__}: {error}" if error is not None else "unknown"
