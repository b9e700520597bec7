"""The local service's audit log: what happened to checkpoints, when and by whom (``GET /api/v1/audit``).

Events are named ``<resource>_<action>`` as the official service names them (``checkpoint_create``,
``checkpoint_read``, ``checkpoint_delete``, ``checkpoint_expire``, ``checkpoint_publish``,
``checkpoint_unpublish``, ``checkpoint_ttl_set``, ``checkpoint_copy``). ``event_details`` says who did it
(``actor``: a user, or ``"system"`` for an expiry), whose checkpoint it was (``owner``), its ``tinker_path``
and whatever else the event records (a read's ``purpose``, a TTL, a copy's source and destination).

One JSON line per event in ``<data_dir>/audit/<YYYY-MM-DD>.jsonl`` (the UTC day of the event), appended
under a lock, so the log survives restarts and a query (one day, as the official API asks) reads one file.
A line that cannot be parsed (a write cut short by a crash) is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["AUDIT_EVENT_TYPES", "AuditEntry", "AuditEventType", "AuditLog"]

AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]
AUDIT_EVENT_TYPES: tuple[AuditEventType, ...] = ("all", "checkpoints", "projects", "teams", "organizations")
# The resource each event type selects (``checkpoints`` -> events named ``checkpoint_*``).
_RESOURCE = {"checkpoints": "checkpoint_", "projects": "project_", "teams": "team_",
             "organizations": "organization_"}


@dataclass(frozen=True)
class AuditEntry:
    timestamp: datetime
    event: str
    event_details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET /api/v1/audit`` answers it (with the older top-level fields of checkpoint events)."""
        data: dict[str, Any] = {"timestamp": self.timestamp.isoformat(), "event": self.event,
                                "event_details": self.event_details}
        if self.event.startswith("checkpoint_"):
            data["model_id"] = self.event_details.get("training_run_id")
            data["tinker_path"] = self.event_details.get("tinker_path")
        if self.event == "checkpoint_read":
            data["purpose"] = self.event_details.get("purpose")
        return data


class AuditLog:
    """Appends events to one file per UTC day and reads a day back. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()

    def _file(self, day: date) -> Path:
        return self._directory / f"{day.isoformat()}.jsonl"

    def record(self, event: str, **details: Any) -> None:
        """Append one event now. Details whose value is None are left out. A failed write is not the
        caller's problem (the operation it describes happened): it is dropped."""
        now = datetime.now(UTC)
        line = json.dumps({"timestamp": now.isoformat(), "event": event,
                           "event_details": {k: v for k, v in details.items() if v is not None}},
                          default=str, sort_keys=True)
        with self._lock, contextlib.suppress(OSError):
            self._directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._file(now.date()), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)

    def entries(self, day: date, event_type: AuditEventType = "all") -> list[AuditEntry]:
        """The events of one UTC day of ``event_type``, oldest first."""
        prefix = _RESOURCE.get(event_type)
        with self._lock:
            try:
                text = self._file(day).read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
        found: list[AuditEntry] = []
        for line in text.splitlines():
            try:
                raw = json.loads(line)
                entry = AuditEntry(datetime.fromisoformat(raw["timestamp"]), str(raw["event"]),
                                   dict(raw.get("event_details") or {}))
            except (ValueError, KeyError, TypeError):
                continue
            if prefix is None or entry.event.startswith(prefix):
                found.append(entry)
        found.sort(key=lambda entry: entry.timestamp)
        return found
