"""The session lifecycle of today's service (protocol 0.38): a session's project and display name, finishing
it, moving it to a project, and searching sessions (``POST sessions/search``).

The field names and values are those of the official SDK 0.38 (``tinker.types.create_session_request``,
``session_search_request``, ``session_summary``, ``session_status``); the request bodies of ``finish`` and
``project`` are the ones its ``ServiceClient.close`` and ``RestClient.assign_session_project`` send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from tinker_actors.types._base import RequestModel, ResponseModel
from tinker_actors.types.session import CreateSessionRequest

__all__ = [
    "SESSION_FINISH_STATUSES",
    "AssignSessionProjectRequest",
    "CreateSessionInProjectRequest",
    "FinishSessionReason",
    "FinishSessionRequest",
    "SessionFinishStatus",
    "SessionSearchCursor",
    "SessionSearchOwner",
    "SessionSearchRequest",
    "SessionSearchResponse",
    "SessionStatusQuery",
    "SessionSummary",
]

SessionFinishStatus = Literal["success", "errored", "interrupted"]
"""How a client says its session ended (``ServiceClient.close(status)``)."""

SESSION_FINISH_STATUSES: tuple[SessionFinishStatus, ...] = ("success", "errored", "interrupted")


class CreateSessionInProjectRequest(CreateSessionRequest):
    """``create_session`` with the fields today's service reads: the project the session goes into and its
    display name (only what was given is sent)."""

    project_id: str | None = None
    display_name: str | None = None
    """Human-readable, need not be unique; used for display and search only."""


class FinishSessionReason(RequestModel):
    type: SessionFinishStatus


class FinishSessionRequest(RequestModel):
    """The body of ``POST /api/v1/sessions/{id}/finish``. The first reason a session gets is the one it keeps."""

    reason: FinishSessionReason
    detail: str | None = None


class AssignSessionProjectRequest(RequestModel):
    """The body of ``PUT /api/v1/sessions/{id}/project``: move the session (its runs and samplers) there."""

    project_id: str = Field(min_length=1)


class SessionSearchCursor(ResponseModel):
    """Where the next page starts: pass a response's ``next_cursor`` back unchanged."""

    last_created_at: AwareDatetime
    last_session_id: str


class SessionSearchOwner(RequestModel):
    """Whose sessions to search: ``own`` (the default), ``accessible``, or ``user`` with ``owner_urns``."""

    type: Literal["own", "accessible", "user"] = "own"
    owner_urns: list[str] | None = Field(None, min_length=1, max_length=10)


class SessionStatusQuery(RequestModel):
    """One status to match: ``active``, ``cancelled``, ``failed`` or ``client_finished`` (with ``reasons``)."""

    type: Literal["active", "cancelled", "failed", "client_finished"]
    reasons: list[SessionFinishStatus] | None = Field(None, min_length=1)


class SessionSearchRequest(RequestModel):
    """A search over the caller's sessions, newest first (``RestClient.search_sessions``)."""

    session_id: str | None = None
    project_ids: list[str] | None = None
    user_metadata: dict[str, str] = Field(default_factory=dict)
    display_name: str | None = Field(None, min_length=1)
    """Case-insensitive; with several words, each must appear in the name."""
    owner: SessionSearchOwner = Field(default_factory=SessionSearchOwner)
    statuses: list[SessionStatusQuery] | None = Field(None, min_length=1)
    limit: int = Field(50, ge=1, le=200)
    cursor: SessionSearchCursor | None = None


class SessionSummary(ResponseModel):
    session_id: str
    created_at: datetime
    owner: str
    project_id: str
    status: dict[str, Any] | None = None
    """``{"type": "active"}``, ``{"type": "client_finished", "reason": {"type": "success"}, ...}``, ...;
    None when the session neither finished nor is known to be running."""
    checkpoints_count: int
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None


class SessionSearchResponse(ResponseModel):
    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None
