"""A session's status as the service reports it (protocol 0.38): active, cancelled, failed (by what), or
finished by its client (and why). Discriminated by ``type``, with the official SDK's names.

``SessionSummary.status`` (``types/sessions.py``) still holds the same JSON as a plain dict; read it as a
:data:`SessionStatus` with ``session_status_of(summary.status)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, TypeAdapter

from tinker_actors.types._base import ResponseModel

__all__ = [
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinishSuccess",
    "ClientSessionFinished",
    "SessionActive",
    "SessionCancelled",
    "SessionFailed",
    "SessionFailedReason",
    "SessionFailedRequestReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedTrainingRunReason",
    "SessionStatus",
    "session_status_of",
]


class SessionFailedRequestReason(ResponseModel):
    type: Literal["request"] = "request"
    request_id: str
    request_type: str


class SessionFailedTrainingRunReason(ResponseModel):
    type: Literal["training_run"] = "training_run"
    training_run_id: str


class SessionFailedSamplingSessionReason(ResponseModel):
    type: Literal["sampling_session"] = "sampling_session"
    sampling_session_id: str


SessionFailedReason: TypeAlias = Annotated[
    SessionFailedRequestReason | SessionFailedTrainingRunReason | SessionFailedSamplingSessionReason,
    Field(discriminator="type")]


class SessionFailed(ResponseModel):
    """Failed by one of its requests, training runs or sampling sessions."""

    type: Literal["failed"] = "failed"
    category: Literal["user", "internal"]
    reason: SessionFailedReason
    message: str


class SessionCancelled(ResponseModel):
    type: Literal["cancelled"] = "cancelled"
    detail: str | None = None


class ClientSessionFinishSuccess(ResponseModel):
    type: Literal["success"] = "success"


class ClientSessionFinishErrored(ResponseModel):
    type: Literal["errored"] = "errored"


class ClientSessionFinishInterrupted(ResponseModel):
    type: Literal["interrupted"] = "interrupted"


ClientSessionFinishReason: TypeAlias = Annotated[
    ClientSessionFinishSuccess | ClientSessionFinishErrored | ClientSessionFinishInterrupted,
    Field(discriminator="type")]


class ClientSessionFinished(ResponseModel):
    """Its client said it was done (``ServiceClient.close(status)``)."""

    type: Literal["client_finished"] = "client_finished"
    reason: ClientSessionFinishReason
    detail: str | None = None


class SessionActive(ResponseModel):
    type: Literal["active"] = "active"


SessionStatus: TypeAlias = Annotated[
    SessionFailed | SessionCancelled | ClientSessionFinished | SessionActive, Field(discriminator="type")]

_STATUS: TypeAdapter[SessionFailed | SessionCancelled | ClientSessionFinished | SessionActive] = TypeAdapter(
    SessionStatus)


def session_status_of(status: dict[str, Any] | None) -> SessionFailed | SessionCancelled | ClientSessionFinished \
        | SessionActive | None:
    """A status read as JSON (``SessionSummary.status``) as its typed form; None stays None."""
    return None if status is None else _STATUS.validate_python(status)
