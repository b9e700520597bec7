"""Session-level endpoints: sessions, heartbeats, capabilities, health, telemetry, retrieve_future."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.future_store import FutureState
from tinker_actors.local.engine.state import PARSE_INLINE_BYTES, ApiError, Call, ServiceState, ok
from tinker_actors.local.engine.work_limits import OverLimitError, WorkLimits, check_at_most
from tinker_actors.local.server.http_server import HttpResponse
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


def _measured_batch(body: bytes, limits: WorkLimits) -> tuple[dict[str, Any] | None, list[int]]:
    """The batch (None if the body is not a JSON object) and the JSON size of each of its events;
    raises :class:`OverLimitError` for too many events or one too large."""
    try:
        batch = json.loads(body)
    except (ValueError, RecursionError):
        return None, []
    if not isinstance(batch, dict):
        return None, []
    events = batch.get("events")
    events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
    check_at_most("the number of telemetry events in a batch", len(events), limits.max_telemetry_events)
    sizes = []
    for index, event in enumerate(events):
        size = len(json.dumps(event))
        check_at_most(f"the size of telemetry event {index} in bytes", size, limits.max_telemetry_event_bytes)
        sizes.append(size)
    return batch, sizes


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
        # Lenient about content on purpose: a failing batch makes the official SDK retry it forever,
        # with a warning each second. Anything that is a JSON object is kept. Only a batch beyond the
        # size limits (far beyond what the SDKs send: at most 100 events) is refused.
        limits = self._state.config.work_limits
        body = call.request.body or b"{}"
        try:
            check_at_most("the telemetry batch size in bytes", len(body), limits.max_telemetry_batch_bytes)
            if len(body) < PARSE_INLINE_BYTES:
                batch, sizes = _measured_batch(body, limits)
            else:
                batch, sizes = await asyncio.to_thread(_measured_batch, body, limits)
        except OverLimitError as error:
            raise ApiError(400, f"telemetry: {error}") from None
        if batch is not None:
            self._state.telemetry.add_batch(batch, sizes)
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
