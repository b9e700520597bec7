"""The future protocol's messages: submission answers and ``retrieve_future`` (WIRE-PROTOCOL §2.3)."""

from __future__ import annotations

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

QueueState = Literal["active", "paused_capacity", "paused_rate_limit"]


class UntypedAPIFuture(ResponseModel):
    """What a submission answers at once: the id to poll."""

    request_id: str
    model_id: str | None = None


class FutureRetrieveRequest(RequestModel):
    request_id: str


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
