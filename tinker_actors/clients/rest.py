"""RestClient: training runs, checkpoints, sessions, samplers and billing reads (FEATURES R1), and what the
official SDK 0.38 added (R2): models, ``whoami``, ``copy_weights``, external weights URLs, the audit log, session
traces, and bulk checkpoint deletion (``delete_checkpoints``, ours).

It holds no state of its own (every call is independent), so it is a handle that runs its calls in the
IoLoop through the shared HTTP layer rather than an actor; it dies with its ServiceClient. Sync methods
return an :class:`APIFuture` (``.result()``), ``*_async`` methods return the value.

It needs no session and creates none: ``ServiceClient(...).create_rest_client()`` uses that client's
connections, and ``RestClient(base_url=..., api_key=...)`` (as the official SDK 0.38's ``RestClient()``) the
process's shared client for that URL and key (``ServiceClient.shared``), which stays open for the life of the
process and needs no closing. Without a session its errors are reported to that client's session-less telemetry
(``sessionless-<uuid4>``, protocol 0.38; docs/telemetry.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine, Iterable
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import jwt
from pydantic import BaseModel, ValidationError

from tinker_actors.auth.api import exchange_token
from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.errors import (
    APIError,
    APIResponseValidationError,
    ErrorCategory,
    InvalidInputError,
    NoProgressError,
    TinkerError,
)
from tinker_actors.futures import APIFuture
from tinker_actors.http import Purpose
from tinker_actors.telemetry.capture import capture_exceptions
from tinker_actors.types import (
    AuditLogResponse,
    CheckpointArchiveUrlResponse,
    CheckpointsListResponse,
    CopyWeightsRequest,
    CopyWeightsResponse,
    ExternalWeightsUrlsResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    GetSessionResponse,
    ListSessionsResponse,
    ParsedCheckpointTinkerPath,
    SetCheckpointTtlRequest,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoRequest,
    WeightsInfoResponse,
    WhoamiResponse,
)
from tinker_actors.types.billing import (
    BillingUsageResponse,
    CurrentCheckpointStorageUsageResponse,
    GetBillingUsageRequest,
    GetCurrentCheckpointStorageUsageRequest,
)
from tinker_actors.types.sessions import AssignSessionProjectRequest, SessionSearchRequest, SessionSearchResponse

if TYPE_CHECKING:
    from tinker_actors.clients.service import ServiceClient
    from tinker_actors.telemetry import SessionTelemetry

__all__ = ["AuditEventType", "CheckpointDeletionReport", "RestClient"]

_log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

AccessScope = Literal["owned", "accessible"]
"""Whose objects a listing shows: the caller's own (the server's default) or all it may see."""
AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]
"""Which resource's events ``get_audit_log`` returns."""
_AUDIT_EVENT_TYPES = ("all", "checkpoints", "projects", "teams", "organizations")
TRACE_EXPORT_POLL_INTERVAL_S = 5.0
"""How often ``export_session_trace`` asks whether the server has built the trace (the official SDK's pace)."""
TRACE_EXPORT_TIMEOUT_S = 3600.0
"""How long ``export_session_trace`` waits for the server to build the trace before giving up."""
DELETE_MAX_IN_FLIGHT = 16
"""Deletions ``delete_checkpoints`` keeps in flight at once."""


class CheckpointDeletionReport(BaseModel):
    """What ``delete_checkpoints`` did: the paths it deleted, in the order given, and those it could not delete
    (path -> the error's message)."""

    deleted: list[str]
    failed: dict[str, str]


def _seg(value: str) -> str:
    return quote(value, safe=":")


@names_sdk_methods  # x-sdk-method on the wire (protocol 0.38)
@capture_exceptions  # errors reach the session's (or session-less) telemetry once, and the caller unchanged
class RestClient:
    """``RestClient(service)`` over a ServiceClient's connections, or ``RestClient(base_url=..., api_key=...)``
    on its own (either falls back to ``TINKER_BASE_URL`` / ``TINKER_API_KEY``); never both. No session."""

    def __init__(self, service: ServiceClient | None = None, *, base_url: str | None = None,
                 api_key: str | None = None) -> None:
        if service is None:
            from tinker_actors.clients.service import ServiceClient

            service = ServiceClient.shared_for(base_url=base_url, api_key=api_key)
        elif base_url is not None or api_key is not None:
            raise InvalidInputError("RestClient takes either a ServiceClient or base_url/api_key, not both: a "
                                    "ServiceClient already carries its own base URL and key")
        self._service = service
        self._context = service._context
        if not service.has_session:
            # Before a session (there may never be one): its errors go to session-less telemetry, as 0.38's.
            service._sessionless_telemetry()

    def get_telemetry(self) -> SessionTelemetry | None:
        """Where this client's errors are reported: the session's telemetry (``ServiceClient.telemetry``) once the
        ServiceClient has a session; before (a REST client creates none), its session-less telemetry (id
        ``sessionless-<uuid4>``, protocol 0.38). None when telemetry is disabled."""
        if self._service.has_session:
            return self._service.get_telemetry()
        return self._context.sessionless_telemetry

    # -- plumbing --

    def _future(self, coro: Coroutine[Any, Any, T]) -> APIFuture[T]:
        raw = self._context.submit(coro)
        return APIFuture(raw, on_cancel=raw.cancel)

    async def _in_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(self._context.submit(coro))

    async def _get(self, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        response = await self._context.http.request(Purpose.TRAINING, "GET", path, params=params, response_model=model)
        return response.data

    async def _send(self, method: str, path: str, body: bytes | None = None) -> None:
        await self._context.http.request(Purpose.TRAINING, method, path, content=body)

    async def _post(self, path: str, request: BaseModel, model: type[M]) -> M:
        body = self._context.profile.codec.encode_json(request)
        response = await self._context.http.request(Purpose.TRAINING, "POST", path, content=body, response_model=model)
        return response.data

    # -- training runs --

    def list_training_runs(self, limit: int = 20, offset: int = 0, access_scope: AccessScope | None = None,
                           project_id: str | None = None) -> APIFuture[TrainingRunsResponse]:
        """A page of training runs; ``access_scope`` and ``project_id`` (0.38) are sent only when given."""
        return self._future(self._list_training_runs(limit, offset, access_scope, project_id))

    async def _list_training_runs(self, limit: int = 20, offset: int = 0, access_scope: AccessScope | None = None,
                                  project_id: str | None = None) -> TrainingRunsResponse:
        params = _given({"limit": limit, "offset": offset, "access_scope": access_scope, "project_id": project_id})
        return await self._get("/api/v1/training_runs", TrainingRunsResponse, params)

    def get_training_run(self, training_run_id: str, access_scope: AccessScope | None = None
                         ) -> APIFuture[TrainingRun]:
        """A run: the caller's, or with ``access_scope="accessible"`` also another's with published checkpoints."""
        return self._future(self._get_training_run(training_run_id, access_scope))

    async def _get_training_run(self, training_run_id: str, access_scope: AccessScope | None = None) -> TrainingRun:
        return await self._get(f"/api/v1/training_runs/{_seg(training_run_id)}", TrainingRun,
                               _given({"access_scope": access_scope}) or None)

    def get_training_run_by_tinker_path(self, tinker_path: str, access_scope: AccessScope | None = None
                                        ) -> APIFuture[TrainingRun]:
        return self.get_training_run(ParsedCheckpointTinkerPath.from_tinker_path(tinker_path).training_run_id,
                                     access_scope)

    async def _get_training_run_by_tinker_path(self, tinker_path: str, access_scope: AccessScope | None = None
                                               ) -> TrainingRun:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return await self._get_training_run(parsed.training_run_id, access_scope)

    # -- checkpoints --

    def list_checkpoints(self, training_run_id: str) -> APIFuture[CheckpointsListResponse]:
        return self._future(self._list_checkpoints(training_run_id))

    async def _list_checkpoints(self, training_run_id: str) -> CheckpointsListResponse:
        return await self._get(f"/api/v1/training_runs/{_seg(training_run_id)}/checkpoints", CheckpointsListResponse)

    def list_user_checkpoints(self, limit: int = 100, offset: int = 0, access_scope: AccessScope | None = None,
                              project_id: str | None = None) -> APIFuture[CheckpointsListResponse]:
        """A page of checkpoints, newest first; ``access_scope`` and ``project_id`` (ours: the official SDK sends
        neither here) are sent only when given."""
        return self._future(self._list_user_checkpoints(limit, offset, access_scope, project_id))

    async def _list_user_checkpoints(self, limit: int = 100, offset: int = 0, access_scope: AccessScope | None = None,
                                     project_id: str | None = None) -> CheckpointsListResponse:
        params = _given({"limit": limit, "offset": offset, "access_scope": access_scope, "project_id": project_id})
        return await self._get("/api/v1/checkpoints", CheckpointsListResponse, params)

    def _checkpoint_path(self, training_run_id: str, checkpoint_id: str) -> str:
        kind, _, name = checkpoint_id.partition("/")
        return f"/api/v1/training_runs/{_seg(training_run_id)}/checkpoints/{_seg(kind)}/{_seg(name)}"

    def delete_checkpoint(self, training_run_id: str, checkpoint_id: str) -> APIFuture[None]:
        return self._future(self._delete_checkpoint(training_run_id, checkpoint_id))

    async def _delete_checkpoint(self, training_run_id: str, checkpoint_id: str) -> None:
        await self._send("DELETE", self._checkpoint_path(training_run_id, checkpoint_id))

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return self.delete_checkpoint(parsed.training_run_id, parsed.checkpoint_id)

    async def _delete_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        await self._delete_checkpoint(parsed.training_run_id, parsed.checkpoint_id)

    def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)  # a bad path fails here, nothing is sent
        return self._future(self._publish_checkpoint_from_tinker_path(tinker_path))

    async def _publish_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        await self._send("POST", self._checkpoint_path(parsed.training_run_id, parsed.checkpoint_id) + "/publish")

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)  # a bad path fails here, nothing is sent
        return self._future(self._unpublish_checkpoint_from_tinker_path(tinker_path))

    async def _unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        await self._send("DELETE", self._checkpoint_path(parsed.training_run_id, parsed.checkpoint_id) + "/publish")

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None) -> APIFuture[None]:
        """Newer SDKs: expire the checkpoint ``ttl_seconds`` from now (``None``: keep it forever)."""
        ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)  # a bad path fails here, nothing is sent
        return self._future(self._set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds))

    async def _set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None) -> None:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        body = self._context.profile.codec.encode_json(SetCheckpointTtlRequest(ttl_seconds=ttl_seconds))
        await self._send("PUT", self._checkpoint_path(parsed.training_run_id, parsed.checkpoint_id) + "/ttl", body)

    def get_checkpoint_archive_url(self, training_run_id: str, checkpoint_id: str
                                   ) -> APIFuture[CheckpointArchiveUrlResponse]:
        return self._future(self._get_checkpoint_archive_url(training_run_id, checkpoint_id))

    async def _get_checkpoint_archive_url(self, training_run_id: str, checkpoint_id: str
                                               ) -> CheckpointArchiveUrlResponse:
        response = await self._context.http.request(
            Purpose.TRAINING, "GET", self._checkpoint_path(training_run_id, checkpoint_id) + "/archive",
            headers={"accept": "application/gzip"}, accept_status=frozenset({301, 302, 303, 307, 308}))
        location = response.headers.get("location")
        if location is None:
            raise APIResponseValidationError("the archive endpoint did not redirect to a download URL",
                                             status_code=response.status_code)
        expires = datetime.now(UTC) + timedelta(minutes=15)
        if "expires" in response.headers:
            with contextlib.suppress(TypeError, ValueError):
                expires = parsedate_to_datetime(response.headers["expires"])
        return CheckpointArchiveUrlResponse(url=location, expires=expires)

    def get_checkpoint_archive_url_from_tinker_path(self, tinker_path: str
                                                    ) -> APIFuture[CheckpointArchiveUrlResponse]:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return self.get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id)

    async def _get_checkpoint_archive_url_from_tinker_path(self, tinker_path: str
                                                                ) -> CheckpointArchiveUrlResponse:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return await self._get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id)

    def get_weights_info_by_tinker_path(self, tinker_path: str) -> APIFuture[WeightsInfoResponse]:
        ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)  # a bad path fails here, nothing is sent
        return self._future(self._get_weights_info_by_tinker_path(tinker_path))

    async def _get_weights_info_by_tinker_path(self, tinker_path: str) -> WeightsInfoResponse:
        ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        response = await self._context.http.request(
            Purpose.TRAINING, "POST", "/api/v1/weights_info",
            content=self._context.profile.codec.encode_json(WeightsInfoRequest(tinker_path=tinker_path)),
            response_model=WeightsInfoResponse)
        return response.data

    # -- sessions and samplers --

    def list_sessions(self, limit: int = 20, offset: int = 0, access_scope: AccessScope | None = None,
                      project_id: str | None = None) -> APIFuture[ListSessionsResponse]:
        """A page of session ids, newest first; ``project_id`` (ours) keeps that project's."""
        return self._future(self._list_sessions(limit, offset, access_scope, project_id))

    async def _list_sessions(self, limit: int = 20, offset: int = 0, access_scope: AccessScope | None = None,
                             project_id: str | None = None) -> ListSessionsResponse:
        params = _given({"limit": limit, "offset": offset, "access_scope": access_scope, "project_id": project_id})
        return await self._get("/api/v1/sessions", ListSessionsResponse, params)

    def get_session(self, session_id: str, access_scope: AccessScope | None = None) -> APIFuture[GetSessionResponse]:
        return self._future(self._get_session(session_id, access_scope))

    async def _get_session(self, session_id: str, access_scope: AccessScope | None = None) -> GetSessionResponse:
        return await self._get(f"/api/v1/sessions/{_seg(session_id)}", GetSessionResponse,
                               _given({"access_scope": access_scope}) or None)

    def assign_session_project(self, session_id: str, project_id: str) -> APIFuture[None]:
        """Move a session (its training runs and samplers) into a project, as the official SDK 0.38
        (``PUT sessions/{id}/project``). A session cannot be taken out of a project."""
        request = _project_request(session_id, project_id)  # bad input fails here, nothing is sent
        return self._future(self._assign_session_project(session_id, request))

    async def _assign_session_project(self, session_id: str, request: AssignSessionProjectRequest) -> None:
        await self._send("PUT", f"/api/v1/sessions/{_seg(session_id)}/project",
                         self._context.profile.codec.encode_json(request))

    def search_sessions(self, request: SessionSearchRequest | None = None, **filters: Any
                        ) -> APIFuture[SessionSearchResponse]:
        """One page of the caller's sessions, newest first (``POST sessions/search``; the official SDK 0.38's
        experimental ``search_sessions``). Give a :class:`SessionSearchRequest` or its fields as keywords
        (``display_name="nightly"``, ``project_ids=[...]``, ``limit=...``); pass a response's ``next_cursor`` as
        ``cursor`` for the next page."""
        return self._future(self._search_sessions(_search_request(request, filters)))

    async def _search_sessions(self, request: SessionSearchRequest) -> SessionSearchResponse:
        return await self._post("/api/v1/sessions/search", request, SessionSearchResponse)

    def get_sampler(self, sampler_id: str) -> APIFuture[GetSamplerResponse]:
        return self._future(self._get_sampler(sampler_id))

    async def _get_sampler(self, sampler_id: str) -> GetSamplerResponse:
        return await self._get(f"/api/v1/samplers/{_seg(sampler_id)}", GetSamplerResponse)

    # -- billing (the official SDK 0.38 has them on RestClient, deprecated there for AdminClient) --

    def get_billing_usage(self, starting_on: datetime | str, ending_before: datetime | str
                          ) -> APIFuture[BillingUsageResponse]:
        """Hourly usage buckets from ``starting_on`` (inclusive) to ``ending_before`` (exclusive): datetimes or
        RFC 3339 strings on whole UTC hours, at most 14 days apart (``GET billing/usage/events``)."""
        request = _usage_request(starting_on, ending_before)  # bad input fails here, nothing is sent
        return self._future(self._get_billing_usage(request))

    async def _get_billing_usage(self, request: GetBillingUsageRequest) -> BillingUsageResponse:
        params = request.model_dump(mode="json", exclude_none=True)
        return await self._get("/api/v1/billing/usage/events", BillingUsageResponse, params)

    def get_current_checkpoint_storage_usage(self, project_id: str | None = None
                                             ) -> APIFuture[CurrentCheckpointStorageUsageResponse]:
        """Active checkpoints (count, bytes, projected monthly cost) per project and owner; ``project_id``: only
        that project (``GET billing/usage/checkpoints/current``)."""
        request = GetCurrentCheckpointStorageUsageRequest(project_id=project_id)
        return self._future(self._get_current_checkpoint_storage_usage(request))

    async def _get_current_checkpoint_storage_usage(self, request: GetCurrentCheckpointStorageUsageRequest
                                                    ) -> CurrentCheckpointStorageUsageResponse:
        return await self._get("/api/v1/billing/usage/checkpoints/current", CurrentCheckpointStorageUsageResponse,
                               request.model_dump(mode="json", exclude_none=True) or None)

    # -- protocol 0.38: models, identity, copies, external weights, audit log, session traces (FEATURES R2) --

    def get_server_capabilities(self) -> APIFuture[GetServerCapabilitiesResponse]:
        """The models the caller can use, each with ``max_context_length``, ``trainable`` and ``sampleable``
        (``GET get_server_capabilities``; what ``tinker-actors model list`` prints)."""
        return self._future(self._get_server_capabilities())

    async def _get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        return await self._get("/api/v1/get_server_capabilities", GetServerCapabilitiesResponse)

    def whoami(self) -> APIFuture[WhoamiResponse]:
        """The caller's user URN, organization URN and email, read from the claims of a token issued for the
        credential (``sub``, ``org_id``, ``email``), as the official SDK 0.38 reads them: the token this client
        already holds when the server exchanges keys for tokens, else one asked for with ``POST auth/token``."""
        return self._future(self._whoami())

    async def _whoami(self) -> WhoamiResponse:
        current = self._context.http.tokens.peek()
        token = current if current is not None and current.startswith("eyJ") else await exchange_token(
            self._context.http)
        return _whoami_of(token)

    def copy_weights(self, path: str, destination_project_id: str | None = None, *, ttl_seconds: int | None = None,
                     weights_access_token: str | None = None) -> APIFuture[str]:
        """Copy a checkpoint (either kind, or external weights) into a project, as the official SDK 0.38: the copy
        keeps the kind and name, belongs to a new training run that nothing trains, shares the source's storage
        and expires ``ttl_seconds`` from now (None: never). ``destination_project_id`` defaults to the client's
        project (``Config.project_id``, ``TINKER_PROJECT_ID``). ``weights_access_token`` lets another account's
        readable weights be copied (sent in a header, never logged). The future's value is the copy's path."""
        request = _copy_request(path, destination_project_id or self._context.config.project_id, ttl_seconds)
        return self._future(self._copy_weights(request, weights_access_token))

    async def _copy_weights(self, request: CopyWeightsRequest, weights_access_token: str | None) -> str:
        headers = {"x-idempotency-key": str(uuid.uuid4())}  # the same key on every retry: one copy
        if weights_access_token is not None:
            headers["x-tinker-weights-access-token"] = weights_access_token
        response = await self._context.http.request(
            Purpose.TRAINING, "POST", "/api/v1/copy_weights", content=self._context.profile.codec.encode_json(request),
            headers=headers, response_model=CopyWeightsResponse)
        return response.data.tinker_path

    def get_external_weights_urls(self, tinker_path: str) -> APIFuture[ExternalWeightsUrlsResponse]:
        """Key-less download URLs, one per file (keyed by its path in the checkpoint), of an external weights
        checkpoint (``tinker://<run>/external_weights/<name>``), valid until ``expires``. Since 0.38 the
        official SDK downloads checkpoints this way instead of as an archive."""
        parsed = _external_path(tinker_path)  # a bad path fails here, nothing is sent
        return self._future(self._get_external_weights_urls(parsed))

    async def _get_external_weights_urls(self, parsed: ParsedCheckpointTinkerPath) -> ExternalWeightsUrlsResponse:
        return await self._get(self._checkpoint_path(parsed.training_run_id, parsed.checkpoint_id)
                               + "/external_weights_urls", ExternalWeightsUrlsResponse)

    def get_audit_log(self, event_type: AuditEventType = "all", day: date | None = None
                      ) -> APIFuture[AuditLogResponse]:
        """One UTC day (today by default) of the organization's audit log, oldest first, of one resource
        (``GET audit``; the server lets only an admin read it). On ``AdminClient`` in the official SDK 0.38."""
        params = _audit_params(event_type, day)  # bad input fails here, nothing is sent
        return self._future(self._get_audit_log(params))

    async def _get_audit_log(self, params: dict[str, str]) -> AuditLogResponse:
        return await self._get("/api/v1/audit", AuditLogResponse, params)

    def export_session_trace(self, session_id: str, *, poll_interval: float = TRACE_EXPORT_POLL_INTERVAL_S,
                             timeout: float = TRACE_EXPORT_TIMEOUT_S) -> APIFuture[str]:
        """A key-less download URL of the session's trace (its requests on a timeline, a file ui.perfetto.dev
        opens), as the official SDK 0.38: the server builds it (asked every ``poll_interval`` seconds; the first
        wait is logged) and the URL expires after a while (ask again for a fresh one). A failed build raises
        :class:`APIError`; a build still running after ``timeout`` seconds, :class:`NoProgressError`."""
        if not isinstance(session_id, str) or not session_id:
            raise InvalidInputError("export_session_trace needs a session_id (a non-empty str)")
        if not poll_interval > 0 or not timeout > 0:
            raise InvalidInputError("export_session_trace: poll_interval and timeout must be positive seconds")
        return self._future(self._export_session_trace(session_id, poll_interval, timeout))

    async def _export_session_trace(self, session_id: str, poll_interval: float, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            answer = await self._get(f"/api/v1/sessions/{_seg(session_id)}/trace_export", _TraceExport)
            if answer.status == "ready" and answer.url:
                return answer.url
            if answer.status == "failed":
                raise APIError(f"the trace export of session {session_id} failed: {answer.error or 'no reason given'}",
                               category=ErrorCategory.SERVER)
            if time.monotonic() + poll_interval > deadline:
                raise NoProgressError(f"the trace of session {session_id} was still being built after {timeout:g} s")
            if not announced:
                _log.warning("building the trace of session %s (this may take a while)", session_id)
                announced = True
            await asyncio.sleep(poll_interval)

    def delete_checkpoints(self, tinker_paths: Iterable[str], *, max_in_flight: int = DELETE_MAX_IN_FLIGHT
                           ) -> APIFuture[CheckpointDeletionReport]:
        """Delete many checkpoints (ours; what ``tinker-actors checkpoint delete`` does with filters): at most
        ``max_in_flight`` deletions at once, each failure recorded rather than stopping the others. The report
        lists what was deleted and what was not, with why. Paths are checked before anything is sent."""
        paths = list(dict.fromkeys(tinker_paths))  # each once, in the order given
        for path in paths:
            ParsedCheckpointTinkerPath.from_tinker_path(path)
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidInputError(f"delete_checkpoints: max_in_flight must be a positive int, got {max_in_flight!r}")
        return self._future(self._delete_checkpoints(paths, max_in_flight))

    async def _delete_checkpoints(self, paths: list[str], max_in_flight: int) -> CheckpointDeletionReport:
        gate = asyncio.Semaphore(max_in_flight)
        failed: dict[str, str] = {}

        async def delete(path: str) -> bool:
            async with gate:
                try:
                    await self._delete_checkpoint_from_tinker_path(path)
                except TinkerError as error:
                    failed[path] = str(error)
                    return False
                return True

        done = await asyncio.gather(*(delete(path) for path in paths))
        return CheckpointDeletionReport(deleted=[p for p, ok in zip(paths, done, strict=True) if ok],
                                        failed={p: failed[p] for p in paths if p in failed})

    # -- async API: awaitable from any event loop; the HTTP work runs in the IoLoop --

    async def list_training_runs_async(self, limit: int = 20, offset: int = 0,
                                       access_scope: AccessScope | None = None,
                                       project_id: str | None = None) -> TrainingRunsResponse:
        return await self._in_loop(self._list_training_runs(limit, offset, access_scope, project_id))

    async def get_training_run_async(self, training_run_id: str, access_scope: AccessScope | None = None
                                     ) -> TrainingRun:
        return await self._in_loop(self._get_training_run(training_run_id, access_scope))

    async def get_training_run_by_tinker_path_async(self, tinker_path: str, access_scope: AccessScope | None = None
                                                    ) -> TrainingRun:
        return await self._in_loop(self._get_training_run_by_tinker_path(tinker_path, access_scope))

    async def list_checkpoints_async(self, training_run_id: str) -> CheckpointsListResponse:
        return await self._in_loop(self._list_checkpoints(training_run_id))

    async def list_user_checkpoints_async(self, limit: int = 100, offset: int = 0,
                                          access_scope: AccessScope | None = None,
                                          project_id: str | None = None) -> CheckpointsListResponse:
        return await self._in_loop(self._list_user_checkpoints(limit, offset, access_scope, project_id))

    async def delete_checkpoint_async(self, training_run_id: str, checkpoint_id: str) -> None:
        return await self._in_loop(self._delete_checkpoint(training_run_id, checkpoint_id))

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self._in_loop(self._delete_checkpoint_from_tinker_path(tinker_path))

    async def publish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self._in_loop(self._publish_checkpoint_from_tinker_path(tinker_path))

    async def unpublish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        return await self._in_loop(self._unpublish_checkpoint_from_tinker_path(tinker_path))

    async def set_checkpoint_ttl_from_tinker_path_async(self, tinker_path: str, ttl_seconds: int | None) -> None:
        return await self._in_loop(self._set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds))

    async def get_checkpoint_archive_url_async(self, training_run_id: str, checkpoint_id: str
                                               ) -> CheckpointArchiveUrlResponse:
        return await self._in_loop(self._get_checkpoint_archive_url(training_run_id, checkpoint_id))

    async def get_checkpoint_archive_url_from_tinker_path_async(self, tinker_path: str
                                                                ) -> CheckpointArchiveUrlResponse:
        return await self._in_loop(self._get_checkpoint_archive_url_from_tinker_path(tinker_path))

    async def get_weights_info_by_tinker_path_async(self, tinker_path: str) -> WeightsInfoResponse:
        return await self._in_loop(self._get_weights_info_by_tinker_path(tinker_path))

    async def list_sessions_async(self, limit: int = 20, offset: int = 0, access_scope: AccessScope | None = None,
                                  project_id: str | None = None) -> ListSessionsResponse:
        return await self._in_loop(self._list_sessions(limit, offset, access_scope, project_id))

    async def get_session_async(self, session_id: str, access_scope: AccessScope | None = None
                                ) -> GetSessionResponse:
        return await self._in_loop(self._get_session(session_id, access_scope))

    async def assign_session_project_async(self, session_id: str, project_id: str) -> None:
        request = _project_request(session_id, project_id)
        return await self._in_loop(self._assign_session_project(session_id, request))

    async def search_sessions_async(self, request: SessionSearchRequest | None = None, **filters: Any
                                    ) -> SessionSearchResponse:
        return await self._in_loop(self._search_sessions(_search_request(request, filters)))

    async def get_sampler_async(self, sampler_id: str) -> GetSamplerResponse:
        return await self._in_loop(self._get_sampler(sampler_id))

    async def get_billing_usage_async(self, starting_on: datetime | str, ending_before: datetime | str
                                      ) -> BillingUsageResponse:
        return await self._in_loop(self._get_billing_usage(_usage_request(starting_on, ending_before)))

    async def get_current_checkpoint_storage_usage_async(self, project_id: str | None = None
                                                         ) -> CurrentCheckpointStorageUsageResponse:
        request = GetCurrentCheckpointStorageUsageRequest(project_id=project_id)
        return await self._in_loop(self._get_current_checkpoint_storage_usage(request))

    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await self._in_loop(self._get_server_capabilities())

    async def whoami_async(self) -> WhoamiResponse:
        return await self._in_loop(self._whoami())

    async def copy_weights_async(self, path: str, destination_project_id: str | None = None, *,
                                 ttl_seconds: int | None = None, weights_access_token: str | None = None) -> str:
        request = _copy_request(path, destination_project_id or self._context.config.project_id, ttl_seconds)
        return await self._in_loop(self._copy_weights(request, weights_access_token))

    async def get_external_weights_urls_async(self, tinker_path: str) -> ExternalWeightsUrlsResponse:
        return await self._in_loop(self._get_external_weights_urls(_external_path(tinker_path)))

    async def get_audit_log_async(self, event_type: AuditEventType = "all", day: date | None = None
                                  ) -> AuditLogResponse:
        return await self._in_loop(self._get_audit_log(_audit_params(event_type, day)))

    async def export_session_trace_async(self, session_id: str, *, poll_interval: float = TRACE_EXPORT_POLL_INTERVAL_S,
                                         timeout: float = TRACE_EXPORT_TIMEOUT_S) -> str:
        return await self.export_session_trace(session_id, poll_interval=poll_interval, timeout=timeout)

    async def delete_checkpoints_async(self, tinker_paths: Iterable[str], *,
                                       max_in_flight: int = DELETE_MAX_IN_FLIGHT) -> CheckpointDeletionReport:
        return await self.delete_checkpoints(tinker_paths, max_in_flight=max_in_flight)


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the ones left at None (not sent)."""
    return {name: value for name, value in params.items() if value is not None}


def _project_request(session_id: str, project_id: str) -> AssignSessionProjectRequest:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidInputError("assign_session_project needs a session_id (a non-empty str)")
    if not isinstance(project_id, str) or not project_id:
        raise InvalidInputError("assign_session_project needs a project_id (a non-empty str); a session cannot be "
                                "taken out of a project")
    return AssignSessionProjectRequest(project_id=project_id)


def _search_request(request: SessionSearchRequest | None, filters: dict[str, Any]) -> SessionSearchRequest:
    if request is not None and filters:
        raise InvalidInputError("search_sessions takes a SessionSearchRequest or its fields as keywords, not both")
    if request is not None:
        if not isinstance(request, SessionSearchRequest):
            raise InvalidInputError(f"search_sessions takes a SessionSearchRequest, got {type(request).__name__}")
        return request
    try:
        return SessionSearchRequest(**filters)
    except ValidationError as invalid:
        raise InvalidInputError(f"invalid search_sessions filters: {_problems(invalid)}") from None


def _usage_request(starting_on: datetime | str, ending_before: datetime | str) -> GetBillingUsageRequest:
    try:
        request = GetBillingUsageRequest(starting_on=starting_on, ending_before=ending_before)
    except ValidationError as invalid:
        raise InvalidInputError(f"get_billing_usage takes datetimes or RFC 3339 strings: {_problems(invalid)}") \
            from None
    if request.starting_on.tzinfo is None or request.ending_before.tzinfo is None:
        raise InvalidInputError("get_billing_usage needs times with a time zone (UTC hours, e.g. "
                                "'2026-07-13T00:00:00Z')")
    if request.ending_before <= request.starting_on:
        raise InvalidInputError("get_billing_usage: ending_before must be after starting_on")
    return request


def _problems(invalid: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                     for error in invalid.errors(include_input=False, include_url=False))


class _TraceExport(BaseModel):
    """The answer of ``sessions/{id}/trace_export``: polled until ``ready`` (with its ``url``) or ``failed``."""

    status: Literal["pending", "ready", "failed"]
    url: str | None = None
    error: str | None = None


def _whoami_of(token: str) -> WhoamiResponse:
    """Who a token was issued for, from its claims (read, not verified: the server verifies tokens)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise APIResponseValidationError("whoami: the token issued for the credential could not be read") from None
    user, org = claims.get("sub"), claims.get("org_id")
    if not isinstance(user, str) or not user or not isinstance(org, str | int) or isinstance(org, bool):
        raise APIResponseValidationError("whoami: the token issued for the credential names no user or organization")
    email = claims.get("email")
    return WhoamiResponse(user_urn=user, org_urn=f"tml:organization:{org}",
                          email=email if isinstance(email, str) and email else None)


def _copy_request(path: str, destination_project_id: str | None, ttl_seconds: int | None) -> CopyWeightsRequest:
    ParsedCheckpointTinkerPath.from_tinker_path(path)
    if destination_project_id is None:
        raise InvalidInputError("copy_weights needs destination_project_id (or a client project: "
                                "ServiceClient(project_id=...) / TINKER_PROJECT_ID)")
    if ttl_seconds is not None and (isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int)
                                    or ttl_seconds < 0):
        raise InvalidInputError(f"copy_weights: ttl_seconds must be None or whole seconds >= 0, got {ttl_seconds!r}")
    return CopyWeightsRequest(source_path=path, destination_project_id=destination_project_id,
                              ttl_seconds=ttl_seconds)


def _external_path(tinker_path: str) -> ParsedCheckpointTinkerPath:
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
    if parsed.checkpoint_type != "external":
        raise InvalidInputError("get_external_weights_urls takes an external weights checkpoint "
                                f"(tinker://<run>/external_weights/<name>), got {tinker_path!r}")
    return parsed


def _audit_params(event_type: str, day: date | None) -> dict[str, str]:
    if event_type not in _AUDIT_EVENT_TYPES:
        raise InvalidInputError(f"get_audit_log: event_type must be one of {', '.join(_AUDIT_EVENT_TYPES)}, "
                                f"got {event_type!r}")
    if day is not None and not isinstance(day, date):
        raise InvalidInputError(f"get_audit_log: day must be a datetime.date, got {type(day).__name__}")
    params = {"event_type": event_type}
    if isinstance(day, datetime):  # its UTC day (a naive one: its own day)
        day = day.astimezone(UTC).date() if day.tzinfo is not None else day.date()
    if day is not None:
        params["day"] = day.isoformat()
    return params
