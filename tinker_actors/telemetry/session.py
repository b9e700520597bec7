"""One session's telemetry: starting and stopping its reporter, and the handle users get.

A ServiceClient's REST calls made without a session (a ``RestClient`` of its own, or
``create_rest_client()`` before the session exists) report to *session-less* telemetry, as the official
0.38 SDK's REST-only clients do: :func:`start_sessionless_telemetry` starts a reporter under a
``sessionless-<uuid4>`` id that sends no SESSION_START/SESSION_END; the same handle type serves it.

``ServiceClient.telemetry`` is a :class:`SessionTelemetry`. Its methods never block on the network
and never raise into the caller: they put an event on the bus and return. With telemetry disabled
(``TINKER_TELEMETRY=0`` / ``Config.telemetry_enabled=False``, or no reporter slot) the same handle
exists but does nothing, so code never needs to check.

The reporters live under the runtime's ``telemetry_reporter`` slot, a supervisor registered here
(see docs/telemetry.md for why not under each ServiceSupervisor).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from supervisors import ChildSpec, Restart, Strategy, SupervisionError, Supervisor
from tinker_actors.logs import level_enabled
from tinker_actors.runtime.slots import register_slot
from tinker_actors.telemetry.bus import Event, EventBus, default_bus
from tinker_actors.telemetry.ledger import DeliveryCounters, DeliveryLedger
from tinker_actors.telemetry.reporter import FlushNow, SessionTelemetryState, TelemetryReporter, TelemetryWire
from tinker_actors.types.telemetry import Severity

if TYPE_CHECKING:
    from tinker_actors.config import Config
    from tinker_actors.http import HttpLayer
    from tinker_actors.runtime import Runtime

__all__ = ["SESSIONLESS_PREFIX", "SLOT", "SessionTelemetry", "start_session_telemetry", "start_sessionless_telemetry",
           "stop_session_telemetry", "telemetry_for"]

log = structlog.get_logger("tinker_actors.telemetry")

SLOT = "telemetry_reporter"
SESSIONLESS_PREFIX = "sessionless-"
"""How the id of session-less telemetry starts (then a uuid4), as the official 0.38 SDK names it."""
_EXCEPTION_EVENT = "exception"
_POLL = 0.01

_registry_lock = threading.Lock()
_registry: dict[str, SessionTelemetry] = {}


class SessionTelemetry:
    """The user-facing handle on one session's telemetry (or on session-less telemetry: ``session_id`` is then
    its ``sessionless-<uuid4>`` id)."""

    def __init__(self, session_id: str, *, ledger: DeliveryLedger | None = None, bus: EventBus = default_bus,
                 flush: Any = None) -> None:
        self._session_id = session_id
        self._ledger = ledger
        self._bus = bus
        self._reporter = flush  # a NamedRef on the reporter, or None when disabled

    @property
    def enabled(self) -> bool:
        return self._ledger is not None

    @property
    def session_id(self) -> str:
        return self._session_id

    def log(self, name: str, data: Mapping[str, Any] | None = None, severity: Severity = "INFO") -> None:
        """Send a GENERIC_EVENT ``name`` with ``data`` (made JSON-safe, secrets redacted)."""
        if self.enabled:
            self._bus.emit(Event(name, data if data is not None else {}, severity, self._session_id))

    def log_exception(self, error: BaseException, *, method: str | None = None) -> None:
        """Report an exception: ``user_error`` (WARNING) if it is the user's, else UNHANDLED_EXCEPTION."""
        if self.enabled:
            data = {"method": method} if method else {}
            self._bus.emit(Event(_EXCEPTION_EVENT, data, "ERROR", self._session_id, error))
            # Sent now, not at the next periodic flush (10 s): an error is what the server most needs to see,
            # and the process may be about to end. Asked of the reporter, never waited for; a burst of errors
            # still goes out as few batches, one on the wire at a time.
            self.flush()

    def flush(self) -> None:
        """Ask the reporter to send a batch now (returns at once)."""
        if self._reporter is not None:
            with contextlib.suppress(Exception):  # a stopped reporter: nothing to flush
                self._reporter.tell(FlushNow())

    def wait_until_settled(self, timeout: float) -> bool:
        """Flush, then wait until every event emitted so far is acknowledged, dropped or given up.

        True when nothing is pending any more; False when ``timeout`` passed first.
        """
        if self._ledger is None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            if self._ledger.snapshot().pending <= 0:
                return True
            if time.monotonic() >= deadline:
                return False
            self.flush()
            time.sleep(min(_POLL * 5, max(0.0, deadline - time.monotonic())))

    def counters(self) -> DeliveryCounters:
        """Emitted / acknowledged / dropped / failed / pending figures (all zero when disabled)."""
        return self._ledger.snapshot() if self._ledger is not None else DeliveryCounters()

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"SessionTelemetry(session_id={self._session_id!r}, {state})"


def telemetry_for(session_id: str) -> SessionTelemetry | None:
    """The live handle of a session (used by exception capture on every client of that session)."""
    return _registry.get(session_id)


def start_session_telemetry(runtime: Runtime, config: Config, http: HttpLayer, session_id: str, *,
                            wire: TelemetryWire) -> SessionTelemetry:
    """Start the session's reporter (which queues SESSION_START); ``wire``: how the session's protocol
    writes a batch. Disabled handle if turned off."""
    if not session_id:
        return SessionTelemetry(session_id)
    return _start(runtime, config, http, session_id, wire=wire, sessionless=False) or SessionTelemetry(session_id)


def start_sessionless_telemetry(runtime: Runtime, config: Config, http: HttpLayer, *,
                                wire: TelemetryWire) -> SessionTelemetry | None:
    """Start a reporter for calls made without a session, under a new ``sessionless-<uuid4>`` id: no
    SESSION_START/SESSION_END, nothing sent until something is logged. None when telemetry is off
    (or no reporter could start): then there is nothing to report to. Never raises: it runs while a
    ``RestClient`` is made, which telemetry must not break."""
    telemetry_id = f"{SESSIONLESS_PREFIX}{uuid.uuid4()}"
    try:
        return _start(runtime, config, http, telemetry_id, wire=wire, sessionless=True)
    except Exception as error:  # the runtime is stopping (interpreter exit): nothing would be sent anyway
        if level_enabled(config.log_level, "debug"):
            log.debug("telemetry.reporter_not_started", session_id=telemetry_id, error=str(error))
        return None


def _start(runtime: Runtime, config: Config, http: HttpLayer, telemetry_id: str, *, wire: TelemetryWire,
           sessionless: bool) -> SessionTelemetry | None:
    if not config.telemetry_enabled:
        return None
    try:
        parent = runtime.root.supervisor(SLOT)
    except SupervisionError:  # the slot holds something else (a test runtime): no upload
        if level_enabled(config.log_level, "debug"):
            log.debug("telemetry.no_reporter_slot", session_id=telemetry_id)
        return None
    settings = config.telemetry
    state = SessionTelemetryState(session_id=telemetry_id, http=http, ioloop=runtime.ioloop, settings=settings,
                                  secrets=config.secret_values(), wire=wire, bus=default_bus, ledger=DeliveryLedger(),
                                  started_at=time.monotonic(), sessionless=sessionless)
    spec = ChildSpec(_child_id(telemetry_id), lambda: TelemetryReporter.start(state), restart=Restart.TRANSIENT,
                     shutdown=settings.drain_timeout + 2.0)
    try:
        reporter = parent.start_child(spec, timeout=10.0)
    except SupervisionError as error:
        if level_enabled(config.log_level, "warning"):
            log.warning("telemetry.reporter_not_started", session_id=telemetry_id, error=str(error))
        return None
    handle = SessionTelemetry(telemetry_id, ledger=state.ledger, bus=default_bus, flush=reporter)
    with _registry_lock:
        _registry[telemetry_id] = handle
    return handle


def stop_session_telemetry(runtime: Runtime, session_id: str) -> None:
    """End the session's reporter (or a session-less one, by its id): SESSION_END queued (not for a
    session-less one), then a drain bounded by ``drain_timeout``."""
    with _registry_lock:
        handle = _registry.pop(session_id, None)
    if handle is None or runtime.stopped:
        return
    # Already gone means its supervisor is shutting down, and that drains it.
    with contextlib.suppress(SupervisionError):
        runtime.root.supervisor(SLOT).terminate_child(_child_id(session_id))


def _child_id(telemetry_id: str) -> str:
    return telemetry_id if telemetry_id.startswith(SESSIONLESS_PREFIX) else f"session-{telemetry_id}"


def _slot_spec(_runtime: Runtime) -> ChildSpec:
    # A generous restart intensity: a misbehaving reporter must never take the root down with it.
    return Supervisor.child_spec(SLOT, (), strategy=Strategy.ONE_FOR_ONE, max_restarts=20, max_seconds=10.0,
                                 restart=Restart.PERMANENT, shutdown=10.0)


register_slot(SLOT, _slot_spec)
