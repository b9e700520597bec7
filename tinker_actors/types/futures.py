"""The future protocol's messages: submission answers and ``retrieve_future`` (WIRE-PROTOCOL §2.3)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import field_validator

from tinker_actors.errors import ErrorCategory
from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = [
    "FutureRetrieveRequest",
    "QueueState",
    "RequestFailedResponse",
    "TryAgainResponse",
    "UntypedAPIFuture",
]

class QueueState(StrEnum):
    """Why a pending request may be slow, as a 408 / try_again answer says (``queue_state``).

    A ``str`` enum: each member equals its wire value (``QueueState.PAUSED_CAPACITY == "paused_capacity"``).
    The official SDK's enum of the same name and members (``tinker.lib.api_future_impl.QueueState``).
    """

    ACTIVE = "active"
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    PAUSED_CAPACITY = "paused_capacity"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> QueueState:
        """A wire value as a member; anything unrecognised is ``UNKNOWN`` (as the official SDK reads it)."""
        try:
            return cls(value) if isinstance(value, str) else cls.UNKNOWN
        except ValueError:
            return cls.UNKNOWN


class UntypedAPIFuture(ResponseModel):
    """What a submission answers at once: the id to poll."""

    request_id: str
    model_id: str | None = None
    sample_sequence_ids: list[str] | None = None
    """A sample's future (protocol 0.38): the id of each sequence it will return, in order."""


class FutureRetrieveRequest(RequestModel):
    request_id: str
    allow_metadata_only: bool = False
    """Protocol 0.38: the server may answer a finished request's size first (``complete_metadata``) when its
    result is large. Sent only when set by protocol 0.6.3, which has no such field."""


class TryAgainResponse(ResponseModel):
    """Still pending. ``queue_state`` says why it may be slow (read by us; ignored by 0.6.3)."""

    type: Literal["try_again"] = "try_again"
    request_id: str
    queue_state: QueueState | str = "active"
    queue_state_reason: str | None = None


class RequestFailedResponse(ResponseModel):
    """The request ran and failed."""

    error: str
    category: ErrorCategory = ErrorCategory.UNKNOWN

    @field_validator("category", mode="before")
    @classmethod
    def _lenient_category(cls, value: Any) -> ErrorCategory:
        # Any category we do not know is "unknown", never a validation failure of the whole answer.
        return ErrorCategory.parse(value)
