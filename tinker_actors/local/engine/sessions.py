"""Live sessions and their heartbeats (WIRE-PROTOCOL §2.4).

A session stays live while its client heartbeats (or otherwise uses it); one that is silent for
longer than ``timeout_s`` expires, and the service then unloads its models and samplers; so does one
its client finishes (newer SDKs, ``ServiceClient.close``). Sessions themselves (owner, project,
display name, and how their client finished them) are remembered in the data directory; liveness
only in memory: after a restart every remembered session that was not finished gets a fresh
``timeout_s`` to heartbeat again, and a finished one stays finished.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from tinker_actors.local.engine.storage import DEFAULT_OWNER, FinishReason, SessionRecord, Storage

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """Which sessions are live, and when each was last heard from. Used on the service loop only."""

    def __init__(self, storage: Storage, *, timeout_s: float) -> None:
        self._storage = storage
        self._timeout_s = timeout_s
        now = time.monotonic()
        self._last_seen: dict[str, float] = {
            record.session_id: now for record in storage.sessions() if record.finish_reason is None}

    def create(self, owner: str = DEFAULT_OWNER, *, project_id: str | None = None, display_name: str | None = None,
               user_metadata: dict[str, str] | None = None) -> str:
        session_id = str(uuid.uuid4())
        self._storage.add_session(SessionRecord(
            session_id=session_id, created=datetime.now(UTC), owner=owner, project_id=project_id,
            display_name=display_name, user_metadata=user_metadata))
        self._last_seen[session_id] = time.monotonic()
        return session_id

    def touch(self, session_id: str) -> bool:
        """Record a sign of life; ``False`` if the session is unknown, expired or finished."""
        if session_id not in self._last_seen:
            return False
        self._last_seen[session_id] = time.monotonic()
        return True

    def is_live(self, session_id: str) -> bool:
        return session_id in self._last_seen

    def finish(self, session_id: str, reason: FinishReason = "success", detail: str | None = None) -> bool:
        """End a live session at its client's request, recording why (persisted); ``False`` if it is
        unknown or already over (a finished session keeps its first reason)."""
        if self._last_seen.pop(session_id, None) is None:
            return False
        self._storage.update_session(
            session_id, lambda record: record if record.finish_reason is not None
            else replace(record, finish_reason=reason, finish_detail=detail))
        return True

    def finished(self, session_id: str) -> bool:
        """Whether the session was finished by its client (remembered across restarts)."""
        record = self._storage.session(session_id)
        return record is not None and record.finish_reason is not None

    def expire(self) -> list[str]:
        """Drop the sessions silent for longer than the timeout; returns their ids."""
        horizon = time.monotonic() - self._timeout_s
        expired = [sid for sid, seen in self._last_seen.items() if seen < horizon]
        for sid in expired:
            del self._last_seen[sid]
        return expired

    @property
    def live_count(self) -> int:
        return len(self._last_seen)
