"""Telemetry: the in-process event bus, the per-session reporter actor, exception capture, OTel headers.

See docs/telemetry.md. ``ServiceClient.telemetry`` is the per-session handle
(:class:`SessionTelemetry`; REST calls without a session report to session-less telemetry, the same handle
type); :func:`emit` / :func:`attach` / :func:`detach` work on the process-wide bus.
"""

from tinker_actors.telemetry.bus import Event, EventBus, Handler, attach, default_bus, detach, emit
from tinker_actors.telemetry.capture import capture_exceptions, report_exception
from tinker_actors.telemetry.events import STATS_EVENT, USER_ERROR_EVENT
from tinker_actors.telemetry.ledger import DeliveryCounters
from tinker_actors.telemetry.otel import otel_available, trace_headers
from tinker_actors.telemetry.process import process_uuid
from tinker_actors.telemetry.reporter import TelemetryWire
from tinker_actors.telemetry.session import (
    SESSIONLESS_PREFIX,
    SessionTelemetry,
    start_session_telemetry,
    start_sessionless_telemetry,
    stop_session_telemetry,
    telemetry_for,
)

__all__ = [
    "SESSIONLESS_PREFIX",
    "STATS_EVENT",
    "USER_ERROR_EVENT",
    "DeliveryCounters",
    "Event",
    "EventBus",
    "Handler",
    "SessionTelemetry",
    "TelemetryWire",
    "attach",
    "capture_exceptions",
    "default_bus",
    "detach",
    "emit",
    "otel_available",
    "process_uuid",
    "report_exception",
    "start_session_telemetry",
    "start_sessionless_telemetry",
    "stop_session_telemetry",
    "telemetry_for",
    "trace_headers",
]
