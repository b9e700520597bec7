"""Session-level endpoints: sessions (create, heartbeat, finish, project), capabilities, health, telemetry,
the protocol flags of newer SDKs (``client/config``, ``client/dynamic_config``), and retrieve_future.

A session, and every future, belongs to the user who created it: to anyone else its id answers as an
unknown one would (404 for a session, 410 for a future), with the same body. A session its client
finished (``POST /sessions/{id}/finish``, first reason wins) answers 410 to heartbeats, which newer
SDKs take as "stop heartbeating", and to requests creating models or samplers in it.

retrieve_future answers a finished forward_backward or sample result as protobuf when the poll's
``Accept`` asks for ``application/x-protobuf`` (protocol 0.38), as JSON otherwise (0.6.3); errors and
the other results are JSON for both. A poll that sets ``allow_metadata_only`` gets a result of at least
``inline_result_bytes`` announced by its size first (``{"status": "complete_metadata",
"response_payload_size": n}``) and the result itself on its next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import pydantic
from pydantic import ConfigDict, Field

from tinker_actors.local.api.request_bodies import CreateSessionAdded, RetrieveAdded, read_body
from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.future_store import FutureState, Result
from tinker_actors.local.engine.state import (
    PARSE_INLINE_BYTES,
    ApiError,
    Call,
    ServiceState,
    ok,
    validation_message,
)
from tinker_actors.local.engine.storage import FinishReason, SessionRecord
from tinker_actors.local.engine.work_limits import OverLimitError, WorkLimits, check_at_most
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import (
    CreateSessionRequest,
    CreateSessionResponse,
    FutureRetrieveRequest,
    HealthResponse,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    TryAgainResponse,
    encode_json,
)

__all__ = ["MAX_LABEL_CHARS", "SessionApi", "accepts_protobuf", "live_session", "unknown_session"]

_log = logging.getLogger(__name__)

_TELEMETRY_ACCEPTED = b'{"status":"accepted"}'
_PROTOBUF = "application/x-protobuf"


MAX_LABEL_CHARS = 256  # a project id or display name longer than this is refused


class _FinishReason(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: FinishReason


class _FinishBody(pydantic.BaseModel):
    """``ServiceClient.close(status, detail)`` of newer SDKs: ``{"reason": {"type": status}, "detail": ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: _FinishReason = _FinishReason(type="success")
    detail: str | None = Field(None, max_length=4096)


class _ProjectBody(pydantic.BaseModel):
    """``RestClient.assign_session_project``: ``{"project_id": ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    project_id: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)


def unknown_session(session_id: str) -> ApiError:
    """The answer for a session id the caller has no session of (unknown, expired, or another user's)."""
    return ApiError(404, f"unknown or expired session {session_id!r}: create a new session")


def live_session(state: ServiceState, call: Call, session_id: str) -> SessionRecord:
    """The caller's live session ``session_id`` (noted as a sign of life), for a request that creates a
    model or a sampler in it: 404 as unknown for another user's session, 410 once its client finished it."""
    record = state.storage.session(session_id, call.user)
    if record is None:
        raise unknown_session(session_id)
    if not state.sessions.touch(session_id):
        if record.finish_reason is not None:
            raise ApiError(410, f"session {session_id!r} was finished by its client ({record.finish_reason}); "
                                "it takes no new models or samplers: create a new session")
        raise unknown_session(session_id)
    return record


def _label(value: str | None, name: str, endpoint: str) -> str | None:
    if value is not None and not 1 <= len(value) <= MAX_LABEL_CHARS:
        raise ApiError(400, f"{endpoint}: {name} must be 1 to {MAX_LABEL_CHARS} characters")
    return value


def accepts_protobuf(call: Call) -> bool:
    """Whether the poll asks for protobuf results (protocol 0.38 sends ``Accept: application/x-protobuf``)."""
    return _PROTOBUF in call.request.headers.get("accept", "").lower()


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
        router.add("POST", "/api/v1/client/dynamic_config", "client_dynamic_config", self.client_dynamic_config)
        router.add("POST", "/api/v1/sessions/{session_id}/finish", "finish_session", self.finish_session)
        # The official 0.38 RestClient PUTs; POST is accepted too (the same change, idempotent).
        router.add("PUT", "/api/v1/sessions/{session_id}/project", "assign_session_project", self.assign_project)
        router.add("POST", "/api/v1/sessions/{session_id}/project", "assign_session_project", self.assign_project)
        router.add("POST", "/api/v1/retrieve_future", "retrieve_future", self.retrieve_future)

    async def create_session(self, call: Call) -> HttpResponse:
        """A session of the caller; newer SDKs' ``project_id`` and ``display_name`` are kept with it."""
        req, added = read_body(call, CreateSessionRequest, CreateSessionAdded, none_dropped=("user_metadata",))
        metadata = req.user_metadata
        session_id = self._state.sessions.create(
            call.user, project_id=_label(added.project_id, "project_id", call.endpoint),
            display_name=_label(added.display_name, "display_name", call.endpoint),
            user_metadata={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
            if metadata else None)
        return ok(CreateSessionResponse(session_id=session_id))

    async def heartbeat(self, call: Call) -> HttpResponse:
        req = call.parse(SessionHeartbeatRequest)
        state = self._state
        record = state.storage.session(req.session_id, call.user)
        if record is None:
            raise ApiError(404, f"unknown or expired session {req.session_id!r}")
        if not state.sessions.touch(req.session_id):
            if record.finish_reason is not None:  # newer SDKs stop heartbeating on 410
                raise ApiError(410, f"session {req.session_id!r} was finished")
            raise ApiError(404, f"unknown or expired session {req.session_id!r}")
        return ok(SessionHeartbeatResponse())

    async def finish_session(self, call: Call) -> HttpResponse:
        """``ServiceClient.close(status, detail)`` of newer SDKs: the session ends with that reason (the
        first finish wins), its models and samplers are unloaded. Finishing it again answers 200 too
        (a client's retry of the close). An empty body counts as ``success``."""
        session_id = call.params["session_id"]
        body = _FinishBody()
        if call.request.body:
            try:
                body = _FinishBody.model_validate(call.json())
            except pydantic.ValidationError as error:
                raise ApiError(400, validation_message(call.endpoint, error)) from error
        state = self._state
        if state.storage.session(session_id, call.user) is None:
            raise ApiError(404, f"unknown or expired session {session_id!r}")
        if not state.finish_session(session_id, body.reason.type, body.detail) \
                and not state.sessions.finished(session_id):
            raise ApiError(404, f"unknown or expired session {session_id!r}")
        return HttpResponse(200, b"{}")

    async def assign_project(self, call: Call) -> HttpResponse:
        """``RestClient.assign_session_project``: move the caller's session (and so its runs and samplers)
        into a project. A project is a label within the caller's own records; it is never cleared."""
        session_id = call.params["session_id"]
        body = call.parse(_ProjectBody)
        state = self._state
        if state.storage.session(session_id, call.user) is None:
            raise ApiError(404, f"session {session_id!r} not found")
        state.storage.update_session(session_id, lambda record: replace(record, project_id=body.project_id))
        return HttpResponse(200, b"{}")

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
        # Newer SDKs also read each model's context length and what it can do (`tinker model list`);
        # older ones ignore those fields.
        models = [{"model_name": m.name, "max_context_length": m.context_window, "trainable": True,
                   "sampleable": True} for m in self._state.backend.base_models()]
        return HttpResponse(200, json.dumps({"supported_models": models}).encode())

    async def healthz(self, call: Call) -> HttpResponse:
        return ok(HealthResponse(status="ok"))

    async def client_config(self, call: Call) -> HttpResponse:
        """Newer SDKs, once at start (``{"sdk_version"}``): the flags set, ``{}`` for all defaults."""
        self._check_config_body(call)
        return HttpResponse(200, self._state.protocol.config_answer())

    async def client_dynamic_config(self, call: Call) -> HttpResponse:
        """Newer SDKs, at start and every ``refresh_interval_sec``: the dynamic flags set."""
        self._check_config_body(call)
        return HttpResponse(200, self._state.protocol.dynamic_answer())

    @staticmethod
    def _check_config_body(call: Call) -> None:
        if call.request.body and not isinstance(call.json(), dict):
            raise ApiError(400, f"{call.endpoint}: the body is a JSON object ({{\"sdk_version\": ...}})")

    async def retrieve_future(self, call: Call) -> HttpResponse:
        """The long poll: the result, an error payload, 408 try_again while pending, 410 if unknown."""
        req, added = read_body(call, FutureRetrieveRequest, RetrieveAdded)
        state = self._state
        outcome = await state.futures.wait(req.request_id, state.config.long_poll_s, call.user)
        if outcome.state is FutureState.DONE and outcome.result is not None:
            return await self._answer(outcome.result, protobuf=accepts_protobuf(call),
                                      allow_metadata_only=added.allow_metadata_only)
        if outcome.state is FutureState.PENDING:
            return HttpResponse(408, encode_json(TryAgainResponse(
                type="try_again", request_id=req.request_id, queue_state="active")))
        raise ApiError(410, f"unknown or expired request_id {req.request_id!r}", "server")

    async def _answer(self, result: Result, *, protobuf: bool, allow_metadata_only: bool) -> HttpResponse:
        """A finished future's answer in the form the poll asked for, or its size first (metadata only)."""
        as_protobuf = protobuf and result.has_protobuf and not result.error
        encode = result.protobuf if as_protobuf else result.json
        try:
            if result.encoded("protobuf" if as_protobuf else "json") or result.size_hint < PARSE_INLINE_BYTES:
                body = encode()
            else:  # megabytes of outputs: encoded off the service loop, which keeps answering meanwhile
                body = await asyncio.to_thread(encode)
        except Exception as error:  # a result this form cannot carry: the service's fault, not the client's
            _log.exception("local service: encoding a result as %s failed", "protobuf" if as_protobuf else "JSON")
            message, _ = self._state.classify(error)
            failed = Result.failure(f"the local service could not encode the result: {message}", "server")
            return HttpResponse(200, failed.json())
        if allow_metadata_only and not result.error and len(body) >= self._state.protocol.inline_result_bytes:
            return HttpResponse(200, json.dumps({"status": "complete_metadata",
                                                 "response_payload_size": len(body)}).encode())
        return HttpResponse(200, body, content_type=_PROTOBUF if as_protobuf else "application/json")
