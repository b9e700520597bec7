"""``POST /api/v1/sessions/search`` (the official 0.38 SDK's experimental ``RestClient.search_sessions``).

A minimal search over what the local service records of a session: its id, its creation time, whether
it is live, and its training runs' checkpoints. It has one owner (``local``) and one project
(``local``). It does not record a session's ``display_name`` or ``user_metadata``, so a search by them
matches no session, and no session is ever ``cancelled`` or ``failed`` here; a session its client
finished, or that expired, has no status (as the real service answers for a session "neither finished
nor known to be running").

Results are newest first (creation time, then session id, both descending); a page's ``next_cursor`` is
its last session, and the next page starts after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["LOCAL_OWNER", "LOCAL_PROJECT", "SessionRow", "SessionSearchRequest", "SessionSearchResponse", "search"]

LOCAL_OWNER = "local"
LOCAL_PROJECT = "local"


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
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(BaseModel):
    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """What the service knows of one session."""

    session_id: str
    created_at: datetime
    live: bool
    checkpoints_count: int
    checkpoint_storage_bytes: int


def _matches(request: SessionSearchRequest, row: SessionRow) -> bool:
    # A session_id or a display_name may match; no display name is recorded here, so only the id can.
    named = request.session_id is not None or request.display_name is not None
    if named and row.session_id != request.session_id:
        return False
    if request.project_ids is not None and LOCAL_PROJECT not in request.project_ids:
        return False
    if request.user_metadata:  # not recorded here
        return False
    if request.owner.type == "user" and LOCAL_OWNER not in (request.owner.owner_urns or []):
        return False
    return request.statuses is None or (row.live and any(q.type == "active" for q in request.statuses))


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
        sessions=[SessionSummary(session_id=r.session_id, created_at=r.created_at, owner=LOCAL_OWNER,
                                 project_id=LOCAL_PROJECT, status={"type": "active"} if r.live else None,
                                 checkpoints_count=r.checkpoints_count,
                                 checkpoint_storage_bytes=r.checkpoint_storage_bytes)
                  for r in page],
        next_cursor=SessionSearchCursor(last_created_at=page[-1].created_at, last_session_id=page[-1].session_id)
        if more else None)
