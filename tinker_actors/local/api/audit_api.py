"""``GET /api/v1/audit?event_type=...&day=YYYY-MM-DD`` (0.38's ``AdminClient.get_audit_log``).

Answers ``{"entries": [...]}``, one UTC day (today by default) of the audit log (``engine/audit.py``),
oldest first, of one resource (``event_type``: ``all``, ``checkpoints``, ``projects``, ``teams``,
``organizations``; the local service records checkpoint events). The audit log covers the whole service
(its organization), so only the service's admin may read it, as only an organization's admin may on the
official service: another user gets 403.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.audit import AUDIT_EVENT_TYPES, AuditEventType
from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.http_server import HttpResponse

__all__ = ["AuditApi"]


class AuditApi:
    def __init__(self, state: ServiceState, *, is_admin: Callable[[str], bool]) -> None:
        self._state = state
        self._is_admin = is_admin

    def register(self, router: Router) -> None:
        router.add("GET", "/api/v1/audit", "audit_log", self.audit_log)

    async def audit_log(self, call: Call) -> HttpResponse:
        if not self._is_admin(call.user):
            raise ApiError(403, "the audit log is the service's admin's to read: send the admin's API key")
        query = call.request.query
        event_type = _event_type(query.get("event_type", "all"))
        day = _day(query.get("day"))
        entries = self._state.storage.audit.entries(day, event_type)
        return HttpResponse(200, json.dumps({"entries": [entry.to_json() for entry in entries]}).encode())


def _event_type(value: str) -> AuditEventType:
    for known in AUDIT_EVENT_TYPES:
        if value == known:
            return known
    raise ApiError(400, f"event_type must be one of {', '.join(AUDIT_EVENT_TYPES)}, got {value!r}")


def _day(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"day must be a date (YYYY-MM-DD), got {value!r}") from None
