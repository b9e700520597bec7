"""Session statuses a search matches (protocol 0.38): the official SDK's four query types.

Each is a :class:`~tinker_actors.types.sessions.SessionStatusQuery` with its ``type`` fixed (and always sent),
so it goes wherever that does (``SessionSearchRequest(statuses=[ActiveSessionStatusQuery()])``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import model_validator

from tinker_actors.types.search_owner import with_type
from tinker_actors.types.sessions import SessionFinishStatus, SessionStatusQuery

__all__ = [
    "ActiveSessionStatusQuery",
    "CancelledSessionStatusQuery",
    "ClientFinishedSessionStatusQuery",
    "ClientSessionFinishReasonType",
    "FailedSessionStatusQuery",
    "SessionStatusQuery",
]

ClientSessionFinishReasonType: TypeAlias = SessionFinishStatus
"""``"success"``, ``"errored"`` or ``"interrupted"``."""


class ActiveSessionStatusQuery(SessionStatusQuery):
    """Sessions still running."""

    type: Literal["active"] = "active"
    reasons: None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "active")


class CancelledSessionStatusQuery(SessionStatusQuery):
    """Sessions cancelled from the console."""

    type: Literal["cancelled"] = "cancelled"
    reasons: None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "cancelled")


class FailedSessionStatusQuery(SessionStatusQuery):
    """Sessions failed by a request, a training run or a sampling session."""

    type: Literal["failed"] = "failed"
    reasons: None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "failed")


class ClientFinishedSessionStatusQuery(SessionStatusQuery):
    """Sessions whose client said it was done, for any of ``reasons`` (None: any reason)."""

    type: Literal["client_finished"] = "client_finished"

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "client_finished")
