"""Live sessions and their heartbeats (WIRE-PROTOCOL §2.4).

A session stays live while its client heartbeats (or otherwise uses it); one that is silent for
longer than ``timeout_s`` expires, and the service then unloads its models and samplers; so does one
its client finishes (newer SDKs, ``ServiceClient.close``). Session ids
themselves are remembered in the data directory (for ``GET /sessions``), liveness only in memory:
after a restart every remembered session gets a fresh ``timeout_s`` to heartbeat again.
"""

from __future__ import annotations

import time
import uuid

from tinker_actors.local.engine.storage import Storage

__all__ = ["SessionRegistry"]


class SessionRegistry:
    """Which sessions are live, and when each was last heard from. Used on the service loop only."""

    def __init__(self, storage: Storage, *, timeout_s: float) -> None:
        self._storage = storage
        self._timeout_s = timeout_s
        now = time.monotonic()
        self._last_seen: dict[str, float] = {sid: now for sid in storage.sessions()}
        self._finished: set[str] = set()

    def create(self) -> str:
        session_id = str(uuid.uuid4())
        self._storage.add_session(session_id)
        self._last_seen[session_id] = time.monotonic()
        return session_id

    def touch(self, session_id: str) -> bool:
        """Record a sign of life; ``False`` if the session is unknown or expired."""
        if session_id not in self._last_seen:
            return False
        self._last_seen[session_id] = time.monotonic()
        return True

    def is_live(self, session_id: str) -> bool:
        return session_id in self._last_seen

    def finish(self, session_id: str) -> bool:
        """End a live session at its client's request; ``False`` if it is unknown or already over."""
        if self._last_seen.pop(session_id, None) is None:
            return False
        self._finished.add(session_id)
        return True

    def finished(self, session_id: str) -> bool:
        """Whether the session was finished by its client (since the service started)."""
        return session_id in self._finished

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
