"""Session-level endpoints: sessions, heartbeats, capabilities, health, telemetry, retrieve_future."""

from __future__ import annotations

import json

from tinker_actors.local.future_store import FutureState
from tinker_actors.local.http_server import HttpResponse
from tinker_actors.local.routes import Router
from tinker_actors.local.state import ApiError, Call, ServiceState, ok
from tinker_actors.types import (
    CreateSessionRequest,
    CreateSessionResponse,
    FutureRetrieveRequest,
    GetServerCapabilitiesResponse,
    HealthResponse,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    SupportedModel,
    TryAgainResponse,
    encode_json,
)

__all__ = ["SessionApi"]

_TELEMETRY_ACCEPTED = b'{"status":"accepted"}'


class SessionApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def register(self, router: Router) -> None:
        router.add("POST", "/api/v1/create_session", "create_session", self.create_session)
        router.add("POST", "/api/v1/session_heartbeat", "session_heartbeat", self.heartbeat)
        router.add("POST", "/api/v1/telemetry", "telemetry", self.telemetry)
        router.add("GET", "/api/v1/get_server_capabilities", "get_server_capabilities", self.capabilities)
        router.add("GET", "/api/v1/healthz", "healthz", self.healthz)
        router.add("POST", "/api/v1/client/config", "client_config", self.client_config)
        router.add("POST", "/api/v1/client/dynamic_config", "client_dynamic_config", self.client_config)
        router.add("POST", "/api/v1/retrieve_future", "retrieve_future", self.retrieve_future)

    async def create_session(self, call: Call) -> HttpResponse:
        call.parse(CreateSessionRequest)
        session_id = self._state.sessions.create()
        return ok(CreateSessionResponse(session_id=session_id))

    async def heartbeat(self, call: Call) -> HttpResponse:
        req = call.parse(SessionHeartbeatRequest)
        if not self._state.sessions.touch(req.session_id):
            raise ApiError(404, f"unknown or expired session {req.session_id!r}")
        return ok(SessionHeartbeatResponse())

    async def telemetry(self, call: Call) -> HttpResponse:
        # Lenient on purpose: a telemetry batch must never fail (a failing batch makes the official
        # SDK retry it forever, with a warning each second). Anything that is a JSON object is kept.
        try:
            batch = json.loads(call.request.body or b"{}")
        except ValueError:
            batch = None
        if isinstance(batch, dict):
            self._state.telemetry.add_batch(batch)
        return HttpResponse(200, _TELEMETRY_ACCEPTED)

    async def capabilities(self, call: Call) -> HttpResponse:
        models = [SupportedModel(model_name=m.name) for m in self._state.backend.base_models()]
        return ok(GetServerCapabilitiesResponse(supported_models=models))

    async def healthz(self, call: Call) -> HttpResponse:
        return ok(HealthResponse(status="ok"))

    async def client_config(self, call: Call) -> HttpResponse:
        return HttpResponse(200, b"{}")  # newer SDKs: every flag at its default

    async def retrieve_future(self, call: Call) -> HttpResponse:
        """The long poll: the result, an error payload, 408 try_again while pending, 410 if unknown."""
        req = call.parse(FutureRetrieveRequest)
        state = self._state
        outcome = await state.futures.wait(req.request_id, state.config.long_poll_s)
        if outcome.state is FutureState.DONE:
            return HttpResponse(200, outcome.payload)
        if outcome.state is FutureState.PENDING:
            return HttpResponse(408, encode_json(TryAgainResponse(
                type="try_again", request_id=req.request_id, queue_state="active")))
        raise ApiError(410, f"unknown or expired request_id {req.request_id!r}", "server")
