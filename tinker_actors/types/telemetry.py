"""Telemetry events and batches in the wire format of WIRE-PROTOCOL §2.6."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer

from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = [
    "EventType",
    "GenericEvent",
    "SessionEndEvent",
    "SessionStartEvent",
    "Severity",
    "TelemetryBatch",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "UnhandledExceptionEvent",
    "format_duration",
    "new_event_id",
    "utc_now",
]

EventType = Literal["SESSION_START", "SESSION_END", "UNHANDLED_EXCEPTION", "GENERIC_EVENT"]
Severity = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_event_id() -> str:
    return str(uuid.uuid4())


def format_duration(duration: timedelta) -> str:
    """The wire's duration text: Python's ``str(timedelta)``, e.g. ``0:00:00.093933`` (not ISO 8601)."""
    return str(duration)


class _EventBase(ResponseModel):
    event: EventType  # narrowed by each subclass; declared here so it is the first key on the wire
    event_id: str
    event_session_index: int
    severity: Severity
    timestamp: datetime

    @field_serializer("timestamp", when_used="json")
    def _zulu(self, value: datetime) -> str:
        # ISO 8601 in UTC with a trailing Z, as the official SDK sends it.
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SessionStartEvent(_EventBase):
    event: Literal["SESSION_START"]  # required: always sent


class SessionEndEvent(_EventBase):
    event: Literal["SESSION_END"]  # required: always sent
    duration: str


class UnhandledExceptionEvent(_EventBase):
    event: Literal["UNHANDLED_EXCEPTION"]  # required: always sent
    error_type: str
    error_message: str
    traceback: str | None = None


class GenericEvent(_EventBase):
    event: Literal["GENERIC_EVENT"]  # required: always sent
    event_name: str
    event_data: dict[str, Any] = Field(default_factory=dict)


TelemetryEvent = Annotated[
    SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent,
    Field(discriminator="event"),
]


class TelemetrySendRequest(RequestModel):
    events: list[TelemetryEvent]
    platform: str
    sdk_version: str
    session_id: str
    process_uuid: str | None = None
    """The sending process, shared by its sessions (protocol 0.38 sends it; 0.6.3 has no such field)."""


TelemetryBatch = TelemetrySendRequest


class TelemetryResponse(ResponseModel):
    status: Literal["accepted"]
