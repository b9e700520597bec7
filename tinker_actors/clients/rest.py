"""RestClient: training runs, checkpoints, sessions and samplers (FEATURES R1).

It holds no state of its own (every call is independent), so it is a handle that runs its calls in the
IoLoop through the shared HTTP layer rather than an actor; it dies with its ServiceClient. Sync methods
return an :class:`APIFuture` (``.result()``), ``*_async`` methods return the value.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from tinker_actors.clients.sdk_method import names_sdk_methods
from tinker_actors.errors import APIResponseValidationError
from tinker_actors.futures import APIFuture
from tinker_actors.http import Purpose
from tinker_actors.telemetry.capture import capture_exceptions
from tinker_actors.types import (
    CheckpointArchiveUrlResponse,
    CheckpointsListResponse,
    GetSamplerResponse,
    GetSessionResponse,
    ListSessionsResponse,
    ParsedCheckpointTinkerPath,
    SetCheckpointTtlRequest,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoRequest,
    WeightsInfoResponse,
)

if TYPE_CHECKING:
    from tinker_actors.clients.service import ServiceClient
    from tinker_actors.telemetry import SessionTelemetry

__all__ = ["RestClient"]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def _seg(value: str) -> str:
    return quote(value, safe=":")


@names_sdk_methods  # x-sdk-method on the wire (protocol 0.38)
@capture_exceptions  # errors reach the session's telemetry once, and the caller unchanged
class RestClient:
    def __init__(self, service: ServiceClient) -> None:
        self._service = service
        self._context = service._context

    def get_telemetry(self) -> SessionTelemetry | None:
        """The session's telemetry (``ServiceClient.telemetry``), or None when telemetry is disabled."""
        return self._service.get_telemetry()

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

    # -- training runs --

    def list_training_runs(self, limit: int = 20, offset: int = 0) -> APIFuture[TrainingRunsResponse]:
        return self._future(self._list_training_runs(limit, offset))

    async def _list_training_runs(self, limit: int = 20, offset: int = 0) -> TrainingRunsResponse:
        return await self._get("/api/v1/training_runs", TrainingRunsResponse, {"limit": limit, "offset": offset})

    def get_training_run(self, training_run_id: str) -> APIFuture[TrainingRun]:
        return self._future(self._get_training_run(training_run_id))

    async def _get_training_run(self, training_run_id: str) -> TrainingRun:
        return await self._get(f"/api/v1/training_runs/{_seg(training_run_id)}", TrainingRun)

    def get_training_run_by_tinker_path(self, tinker_path: str) -> APIFuture[TrainingRun]:
        return self.get_training_run(ParsedCheckpointTinkerPath.from_tinker_path(tinker_path).training_run_id)

    async def _get_training_run_by_tinker_path(self, tinker_path: str) -> TrainingRun:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(tinker_path)
        return await self._get_training_run(parsed.training_run_id)

    # -- checkpoints --

    def list_checkpoints(self, training_run_id: str) -> APIFuture[CheckpointsListResponse]:
        return self._future(self._list_checkpoints(training_run_id))

    async def _list_checkpoints(self, training_run_id: str) -> CheckpointsListResponse:
        return await self._get(f"/api/v1/training_runs/{_seg(training_run_id)}/checkpoints", CheckpointsListResponse)

    def list_user_checkpoints(self, limit: int = 100, offset: int = 0) -> APIFuture[CheckpointsListResponse]:
        return self._future(self._list_user_checkpoints(limit, offset))

    async def _list_user_checkpoints(self, limit: int = 100, offset: int = 0) -> CheckpointsListResponse:
        return await self._get("/api/v1/checkpoints", CheckpointsListResponse, {"limit": limit, "offset": offset})

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

    def list_sessions(self, limit: int = 20, offset: int = 0) -> APIFuture[ListSessionsResponse]:
        return self._future(self._list_sessions(limit, offset))

    async def _list_sessions(self, limit: int = 20, offset: int = 0) -> ListSessionsResponse:
        return await self._get("/api/v1/sessions", ListSessionsResponse, {"limit": limit, "offset": offset})

    def get_session(self, session_id: str) -> APIFuture[GetSessionResponse]:
        return self._future(self._get_session(session_id))

    async def _get_session(self, session_id: str) -> GetSessionResponse:
        return await self._get(f"/api/v1/sessions/{_seg(session_id)}", GetSessionResponse)

    def get_sampler(self, sampler_id: str) -> APIFuture[GetSamplerResponse]:
        return self._future(self._get_sampler(sampler_id))

    async def _get_sampler(self, sampler_id: str) -> GetSamplerResponse:
        return await self._get(f"/api/v1/samplers/{_seg(sampler_id)}", GetSamplerResponse)

    # -- async API: awaitable from any event loop; the HTTP work runs in the IoLoop --

    async def list_training_runs_async(self, limit: int = 20, offset: int = 0) -> TrainingRunsResponse:
        return await self._in_loop(self._list_training_runs(limit, offset))

    async def get_training_run_async(self, training_run_id: str) -> TrainingRun:
        return await self._in_loop(self._get_training_run(training_run_id))

    async def get_training_run_by_tinker_path_async(self, tinker_path: str) -> TrainingRun:
        return await self._in_loop(self._get_training_run_by_tinker_path(tinker_path))

    async def list_checkpoints_async(self, training_run_id: str) -> CheckpointsListResponse:
        return await self._in_loop(self._list_checkpoints(training_run_id))

    async def list_user_checkpoints_async(self, limit: int = 100, offset: int = 0) -> CheckpointsListResponse:
        return await self._in_loop(self._list_user_checkpoints(limit, offset))

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

    async def list_sessions_async(self, limit: int = 20, offset: int = 0) -> ListSessionsResponse:
        return await self._in_loop(self._list_sessions(limit, offset))

    async def get_session_async(self, session_id: str) -> GetSessionResponse:
        return await self._in_loop(self._get_session(session_id))

    async def get_sampler_async(self, sampler_id: str) -> GetSamplerResponse:
        return await self._in_loop(self._get_sampler(sampler_id))
