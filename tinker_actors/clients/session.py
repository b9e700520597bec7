"""SessionManager: one actor heartbeats every live session, concurrently, from the IoLoop (FEATURES A4).

Heartbeats go every ``heartbeat_interval`` (10 s) for all sessions at once; a session whose heartbeats
have failed for ``heartbeat_warning_after`` (120 s) is logged once per period; a session ends (its
heartbeats stop) when its ServiceClient is closed or garbage-collected, or when the server answers 410
(the session was finished, by ``close(status)`` or from elsewhere: one info line, ``session.finished``).
A heartbeat never pauses on a 402 (billing): it is sent again at the next interval anyway. The actor fills
the runtime's ``session_manager`` slot.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from supervisors import ChildSpec, ExitReason, Restart, SupervisedActor
from tinker_actors.errors import APIStatusError
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.logs import level_enabled
from tinker_actors.runtime import Runtime
from tinker_actors.runtime.ioloop import Outcome
from tinker_actors.runtime.slots import register_slot
from tinker_actors.types import SessionHeartbeatRequest, encode_json

__all__ = ["BeatNow", "EndSession", "HeartbeatDone", "SessionManager", "TrackSession"]

log = structlog.get_logger("tinker_actors.session")


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TrackSession:
    session_id: str
    http: HttpLayer
    owner: weakref.ref[Any]
    interval: float
    warn_after: float
    body: bytes | None = None
    """The heartbeat's body in the session's protocol (default: the 0.6.3 JSON)."""


@dataclass(frozen=True, slots=True)
class EndSession:
    session_id: str


@dataclass(frozen=True, slots=True)
class BeatNow:
    """Timer tick (also sent by tests to heartbeat at once)."""


@dataclass(frozen=True, slots=True)
class HeartbeatDone:
    session_id: str
    ok: bool
    gone: bool = False
    """The server answered 410: the session is finished, heartbeats stop."""


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """Ask: ``{session_id: seconds since the last successful heartbeat}``."""


# ---- the actor ------------------------------------------------------------------------------------

@dataclass
class _Session:
    track: TrackSession
    last_ok: float
    last_sent: float = 0.0
    last_warned: float = 0.0
    beats: int = 0


class SessionManager(SupervisedActor):
    TICK = 0.1  # how often due heartbeats are checked (a dict scan); each session keeps its own interval

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self._runtime = runtime
        self._sessions: dict[str, _Session] = {}

    def on_init(self) -> None:
        self.send_interval(self.TICK, BeatNow())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TrackSession):
            now = time.monotonic()
            self._sessions[message.session_id] = _Session(message, last_ok=now, last_sent=now)
        elif isinstance(message, EndSession):
            self._sessions.pop(message.session_id, None)
        elif isinstance(message, BeatNow):
            self._beat(force=False)
        elif isinstance(message, HeartbeatDone):
            self._done(message)
        elif isinstance(message, SessionStatus):
            now = time.monotonic()
            return {sid: now - s.last_ok for sid, s in self._sessions.items()}
        return None

    def _beat(self, *, force: bool) -> None:
        now = time.monotonic()
        for session_id, session in list(self._sessions.items()):
            if session.track.owner() is None or session.track.http.closed:
                del self._sessions[session_id]  # its ServiceClient is gone: the session ends
                continue
            if not force and now - session.last_sent < session.track.interval:
                continue
            session.last_sent = now
            try:
                self._runtime.ioloop.submit_and_tell(
                    _heartbeat(session.track.http, session_id, session.track.body), self.actor_ref,
                    _completion(session_id))
            except Exception:
                return

    def _done(self, message: HeartbeatDone) -> None:
        session = self._sessions.get(message.session_id)
        if session is None:
            return
        now = time.monotonic()
        if message.gone:
            del self._sessions[message.session_id]
            if level_enabled(session.track.http.config.log_level, "info"):
                log.info("session.finished", session_id=message.session_id, beats=session.beats,
                         reason="the server answered 410 to a heartbeat: the session was finished; heartbeats stop")
            return
        if message.ok:
            session.last_ok = now
            session.beats += 1
            return
        failing_for = now - session.last_ok
        if failing_for >= session.track.warn_after and now - session.last_warned >= session.track.warn_after:
            session.last_warned = now
            log.warning("session.heartbeat_failing", session_id=message.session_id,
                        failing_for=round(failing_for), hint="if this persists the server may end the session")

    def on_terminate(self, reason: ExitReason) -> None:
        self._sessions.clear()


async def _heartbeat(http: HttpLayer, session_id: str, body: bytes | None) -> None:
    from tinker_actors.config import RetryPolicy

    await http.request(Purpose.SESSION, "POST", "/api/v1/session_heartbeat",
                       content=encode_json(SessionHeartbeatRequest(session_id=session_id)) if body is None else body,
                       retry=RetryPolicy(max_retries=0, deadline=None), timeout=http.config.timeouts.heartbeat,
                       endpoint="session_heartbeat", billing_pause=False)


def _completion(session_id: str) -> Callable[[Outcome[None]], HeartbeatDone]:
    return lambda outcome: HeartbeatDone(session_id, outcome.ok, gone=_gone(outcome.error))


def _gone(error: BaseException | None) -> bool:
    return isinstance(error, APIStatusError) and error.status_code == 410


register_slot("session_manager",
              lambda runtime: ChildSpec("session_manager", lambda: SessionManager.start(runtime),
                                        restart=Restart.PERMANENT, shutdown=2.0))
