"""Sessions, heartbeats and server capabilities (WIRE-PROTOCOL §2.1, §2.4)."""

from __future__ import annotations

from typing import Any, Literal

from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = [
    "CreateSessionRequest",
    "CreateSessionResponse",
    "GetServerCapabilitiesResponse",
    "HealthResponse",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SupportedModel",
]


class CreateSessionRequest(RequestModel):
    tags: list[str]
    user_metadata: dict[str, Any] | None
    sdk_version: str
    project_id: str | None = None
    """Protocol 0.38: the project the session goes into (None: the caller's default)."""
    display_name: str | None = None
    """Protocol 0.38: a human-readable name, need not be unique; for display and search only."""
    type: Literal["create_session"] = "create_session"


class CreateSessionResponse(ResponseModel):
    type: Literal["create_session"] = "create_session"
    info_message: str | None = None
    warning_message: str | None = None
    error_message: str | None = None
    session_id: str


class SessionHeartbeatRequest(RequestModel):
    session_id: str
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SessionHeartbeatResponse(ResponseModel):
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SupportedModel(ResponseModel):
    model_name: str | None = None
    # Protocol 0.38 (None when the server does not say):
    max_context_length: int | None = None
    """The longest prompt plus completion the model takes, in tokens."""
    trainable: bool | None = None
    sampleable: bool | None = None


class GetServerCapabilitiesResponse(ResponseModel):
    supported_models: list[SupportedModel]


class HealthResponse(ResponseModel):
    status: Literal["ok"]
