"""``POST /api/v1/sessions/search`` (the official 0.38 SDK's experimental ``RestClient.search_sessions``).

A search over what the local service records of a session: its id, owner, project, display name,
user metadata, creation time, whether it is live or how its client finished it, and its training runs'
checkpoints. A caller only ever finds its own sessions: projects are not shared between users here, so
``owner: accessible`` finds the same as ``own``, and ``owner: user`` finds the caller's sessions only
when the caller is among the names listed. A session created without a project is in project
``local``. No session is ever ``cancelled`` or ``failed`` here; one that expired has no status (as the
real service answers for a session "neither finished nor known to be running").

Results are newest first (creation time, then session id, both descending); a page's ``next_cursor`` is
its last session, and the next page starts after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["SessionRow", "SessionSearchRequest", "SessionSearchResponse", "search"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Owner(_Strict):
    type: Literal["own", "accessible", "user"] = "own"
    owner_urns: list[str] | None = Field(None, min_length=1, max_length=10)


class _StatusQuery(_Strict):
    type: Literal["active", "cancelled", "failed", "client_finished"]
    reasons: list[Literal["success", "errored", "interrupted"]] | None = Field(None, min_length=1)


class SessionSearchCursor(_Strict):
    last_created_at: AwareDatetime
    last_session_id: str


class SessionSearchRequest(_Strict):
    session_id: str | None = None
    project_ids: list[str] | None = None
    user_metadata: dict[str, str] = Field(default_factory=dict)
    display_name: Annotated[str, Field(min_length=1)] | None = None
    owner: _Owner = Field(default_factory=_Owner)
    statuses: list[_StatusQuery] | None = Field(None, min_length=1)
    limit: int = Field(50, ge=1, le=200)
    cursor: SessionSearchCursor | None = None


class SessionSummary(BaseModel):
    session_id: str
    created_at: datetime
    owner: str
    project_id: str
    status: dict[str, Any] | None = None
    checkpoints_count: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """What the service knows of one session (one of the caller's)."""

    session_id: str
    created_at: datetime
    owner: str
    project_id: str
    live: bool
    checkpoints_count: int
    checkpoint_storage_bytes: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    finish_reason: str | None = None
    finish_detail: str | None = None

    @property
    def status(self) -> dict[str, Any] | None:
        if self.finish_reason is not None:
            return {"type": "client_finished", "reason": {"type": self.finish_reason}, "detail": self.finish_detail}
        return {"type": "active"} if self.live else None


def _named(request: SessionSearchRequest, row: SessionRow) -> bool:
    """A session_id or a display_name (every word of it, case-insensitively, somewhere in the name) matches."""
    if request.session_id is None and request.display_name is None:
        return True
    if request.session_id is not None and row.session_id == request.session_id:
        return True
    if request.display_name is None or row.display_name is None:
        return False
    name = row.display_name.casefold()
    return all(word in name for word in request.display_name.casefold().split())


def _status_matches(request: SessionSearchRequest, row: SessionRow) -> bool:
    if request.statuses is None:
        return True
    for query in request.statuses:
        if query.type == "active" and row.live and row.finish_reason is None:
            return True
        if query.type == "client_finished" and row.finish_reason is not None \
                and (query.reasons is None or row.finish_reason in query.reasons):
            return True
    return False


def _matches(request: SessionSearchRequest, row: SessionRow) -> bool:
    if not _named(request, row):
        return False
    if request.project_ids is not None and row.project_id not in request.project_ids:
        return False
    metadata = row.user_metadata or {}
    if any(metadata.get(key) != value for key, value in request.user_metadata.items()):
        return False
    if request.owner.type == "user" and row.owner not in (request.owner.owner_urns or []):
        return False
    return _status_matches(request, row)


def _after(row: SessionRow, cursor: SessionSearchCursor | None) -> bool:
    if cursor is None:
        return True
    return (row.created_at, row.session_id) < (cursor.last_created_at, cursor.last_session_id)


def search(request: SessionSearchRequest, rows: list[SessionRow]) -> SessionSearchResponse:
    """One page of the sessions matching ``request``, newest first."""
    ordered = sorted(rows, key=lambda r: (r.created_at, r.session_id), reverse=True)
    found = [r for r in ordered if _after(r, request.cursor) and _matches(request, r)]
    page = found[:request.limit]
    more = len(found) > request.limit
    return SessionSearchResponse(
        sessions=[SessionSummary(session_id=r.session_id, created_at=r.created_at, owner=r.owner,
                                 project_id=r.project_id, status=r.status, checkpoints_count=r.checkpoints_count,
                                 display_name=r.display_name, user_metadata=r.user_metadata,
                                 checkpoint_storage_bytes=r.checkpoint_storage_bytes)
                  for r in page],
        next_cursor=SessionSearchCursor(last_created_at=page[-1].created_at, last_session_id=page[-1].session_id)
        if more else None)
