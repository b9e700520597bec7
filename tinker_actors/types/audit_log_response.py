"""``AuditLogResponse`` (protocol 0.38): a page of the audit log, oldest first."""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel
from tinker_actors.types.audit_log_entry import AuditLogEntry

__all__ = ["AuditLogResponse"]


class AuditLogResponse(ResponseModel):
    entries: list[AuditLogEntry]
    """Sorted by timestamp."""
