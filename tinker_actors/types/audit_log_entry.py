"""``AuditLogEntry`` (protocol 0.38): one event of an organization's audit log (``AdminClient.get_audit_log``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tinker_actors.types._base import ResponseModel

__all__ = ["AuditLogEntry"]


class AuditLogEntry(ResponseModel):
    timestamp: datetime
    event: str
    """``<resource>_<action>``, e.g. ``checkpoint_read``, ``project_grant_set``."""
    event_details: dict[str, object] = Field(default_factory=dict)
    """Who did it, what it was about, and whatever else the event records."""
    model_id: str | None = None
    """Deprecated by the service (read ``event_details``); checkpoint events only."""
    tinker_path: str | None = None
    """Deprecated by the service (read ``event_details``); checkpoint events only."""
    purpose: str | None = None
    """Deprecated by the service (read ``event_details``); checkpoint reads only."""
