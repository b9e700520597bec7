"""``POST /api/v1/join_sampling_session`` (protocol 0.38): a new client of an existing sampling session asks
the service for its own number, so that each clone numbers its samples in a block of seq ids of its own.

Field names as the official 0.38 SDK's ``JoinSamplingSessionRequest`` / ``JoinSamplingSessionResponse``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = ["JoinSamplingSessionRequest", "JoinSamplingSessionResponse"]


class JoinSamplingSessionRequest(RequestModel):
    sampling_session_id: str
    """The existing sampling session to join."""
    type: Literal["join_sampling_session"] = "join_sampling_session"


class JoinSamplingSessionResponse(ResponseModel):
    type: Literal["join_sampling_session"] = "join_sampling_session"
    client_counter: int = Field(ge=1)
    """This client's number, unique among the clients of the sampling session (the creating client is 0)."""
