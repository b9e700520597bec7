"""REST endpoints: training runs, checkpoints (list, delete, publish, TTL, archive), sessions (and their
search, :mod:`.session_search`), samplers.

A checkpoint id is ``weights/<name>`` or ``sampler_weights/<name>``, so checkpoint routes capture
two segments. Already-public (or not public) checkpoints answer 400, never 409: the official SDK
retries 409 for minutes. The archive endpoint answers 302 to a tarball this service serves itself
at an unguessable, expiring URL (the official CLI downloads it with a plain GET, without a key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, timedelta
from email.utils import format_datetime

from tinker_actors.local.api.routes import Router
from tinker_actors.local.api.session_search import SessionRow, SessionSearchRequest, search
from tinker_actors.local.engine.state import ApiError, Call, ServiceState, ok
from tinker_actors.local.engine.storage import ArchiveTooLargeError, CheckpointRecord, RunRecord
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import (
    Checkpoint,
    CheckpointsListResponse,
    Cursor,
    GetSamplerResponse,
    GetSessionResponse,
    ListSessionsResponse,
    SetCheckpointTtlRequest,
    TrainingRun,
    TrainingRunsResponse,
)

__all__ = ["RestApi", "checkpoint_model", "run_model"]

_CKPT = "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}"
_MAX_PAGE = 10_000


def checkpoint_model(record: CheckpointRecord) -> Checkpoint:
    fields: dict[str, object] = {
        "checkpoint_id": record.checkpoint_id, "checkpoint_type": record.checkpoint_type,
        "time": record.time, "tinker_path": record.tinker_path, "size_bytes": record.size_bytes,
        "public": record.public,
    }
    if record.expires_at is not None:
        fields["expires_at"] = record.expires_at
    return Checkpoint.model_validate(fields)


def run_model(run: RunRecord, last: CheckpointRecord | None, last_sampler: CheckpointRecord | None) -> TrainingRun:
    return TrainingRun(
        training_run_id=run.run_id, base_model=run.base_model, model_owner=run.model_owner, is_lora=True,
        corrupted=run.corrupted, lora_rank=run.lora_rank, last_request_time=run.last_request_time,
        last_checkpoint=checkpoint_model(last) if last is not None else None,
        last_sampler_checkpoint=checkpoint_model(last_sampler) if last_sampler is not None else None,
        user_metadata=run.user_metadata)


def _page(call: Call, default_limit: int) -> tuple[int, int]:
    try:
        limit = int(call.request.query.get("limit", default_limit))
        offset = int(call.request.query.get("offset", 0))
    except ValueError as error:
        raise ApiError(400, "limit and offset must be integers") from error
    if limit < 0 or offset < 0:
        raise ApiError(400, "limit and offset must not be negative")
    return min(limit, _MAX_PAGE), offset


class RestApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def register(self, router: Router) -> None:
        router.add("GET", "/api/v1/training_runs", "list_training_runs", self.list_runs)
        router.add("GET", "/api/v1/training_runs/{run_id}", "get_training_run", self.get_run)
        router.add("GET", "/api/v1/training_runs/{run_id}/checkpoints", "list_checkpoints", self.run_checkpoints)
        router.add("GET", "/api/v1/checkpoints", "list_user_checkpoints", self.user_checkpoints)
        router.add("DELETE", _CKPT, "delete_checkpoint", self.delete_checkpoint)
        router.add("POST", _CKPT + "/publish", "publish_checkpoint", self.publish)
        router.add("DELETE", _CKPT + "/publish", "unpublish_checkpoint", self.unpublish)
        router.add("GET", _CKPT + "/archive", "checkpoint_archive", self.archive)
        router.add("PUT", _CKPT + "/ttl", "set_checkpoint_ttl", self.set_ttl)
        router.add("POST", _CKPT + "/ttl", "set_checkpoint_ttl", self.set_ttl)
        router.add("GET", "/api/v1/sessions", "list_sessions", self.list_sessions)
        router.add("POST", "/api/v1/sessions/search", "search_sessions", self.search_sessions)
        router.add("GET", "/api/v1/sessions/{session_id}", "get_session", self.get_session)
        router.add("GET", "/api/v1/samplers/{sampler_id}", "get_sampler", self.get_sampler)

    # ---- runs --------------------------------------------------------------------------------
    def _run(self, run_id: str) -> TrainingRun:
        storage = self._state.storage
        run = storage.run(run_id)
        if run is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        return run_model(run, storage.last_checkpoint(run_id, "weights"),
                         storage.last_checkpoint(run_id, "sampler_weights"))

    async def list_runs(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 20)
        runs = self._state.storage.runs()
        window = runs[offset:offset + limit]
        return ok(TrainingRunsResponse(
            training_runs=[self._run(r.run_id) for r in window],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(runs))))

    async def get_run(self, call: Call) -> HttpResponse:
        return ok(self._run(call.params["run_id"]))

    # ---- checkpoints -------------------------------------------------------------------------
    async def run_checkpoints(self, call: Call) -> HttpResponse:
        run_id = call.params["run_id"]
        if self._state.storage.run(run_id) is None:
            raise ApiError(404, f"training run {run_id!r} not found")
        records = self._state.storage.checkpoints(run_id)
        return ok(CheckpointsListResponse(checkpoints=[checkpoint_model(r) for r in records]))

    async def user_checkpoints(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 100)
        records = self._state.storage.checkpoints()  # newest first
        window = records[offset:offset + limit]
        return ok(CheckpointsListResponse(
            checkpoints=[checkpoint_model(r) for r in window],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(records))))

    def _checkpoint(self, call: Call) -> CheckpointRecord:
        run_id, kind, name = call.params["run_id"], call.params["kind"], call.params["name"]
        if kind not in ("weights", "sampler_weights"):
            raise ApiError(400, f"checkpoint kind {kind!r} is not weights or sampler_weights")
        record = self._state.storage.checkpoint(run_id, f"{kind}/{name}")
        if record is None:
            raise ApiError(404, f"checkpoint tinker://{run_id}/{kind}/{name} not found")
        return record

    async def delete_checkpoint(self, call: Call) -> HttpResponse:
        self._state.storage.delete_checkpoint(self._checkpoint(call))
        return HttpResponse(204)

    def _modify(self, call: Call, change: Callable[[CheckpointRecord], CheckpointRecord]) -> CheckpointRecord:
        """Apply ``change`` to the checkpoint's current version, atomically (see Storage.modify_checkpoint)."""
        record = self._checkpoint(call)
        updated = self._state.storage.modify_checkpoint(record.run_id, record.checkpoint_id, change)
        if updated is None:
            raise ApiError(404, f"checkpoint {record.tinker_path} not found")
        return updated

    async def publish(self, call: Call) -> HttpResponse:
        def make_public(record: CheckpointRecord) -> CheckpointRecord:
            if record.public:
                raise ApiError(400, f"checkpoint {record.tinker_path} is already public")
            return replace(record, public=True)

        self._modify(call, make_public)
        return HttpResponse(204)

    async def unpublish(self, call: Call) -> HttpResponse:
        def make_private(record: CheckpointRecord) -> CheckpointRecord:
            if not record.public:
                raise ApiError(400, f"checkpoint {record.tinker_path} is not public")
            return replace(record, public=False)

        self._modify(call, make_private)
        return HttpResponse(204)

    async def set_ttl(self, call: Call) -> HttpResponse:
        record = self._checkpoint(call)
        req = call.parse(SetCheckpointTtlRequest)
        ttl = req.ttl_seconds
        limit = self._state.config.work_limits.max_ttl_seconds
        if ttl is not None and not 0 <= ttl <= limit:
            raise ApiError(400, f"ttl_seconds must be between 0 and {limit} (null keeps the checkpoint "
                                f"forever), got {ttl}")
        updated = self._state.storage.set_ttl(record, ttl)
        if updated is None:
            raise ApiError(404, f"checkpoint {record.tinker_path} not found")
        return ok(checkpoint_model(updated))

    async def archive(self, call: Call) -> HttpResponse:
        """302 to the checkpoint version's archive (built once, then reused; see ``archives.py``).

        The ``Location`` is built from the service's configured address, never from the request's
        ``Host`` header (which the client controls)."""
        record = self._checkpoint(call)
        state = self._state
        lifetime = timedelta(seconds=state.config.archive_lifetime_s)
        budget = state.config.work_limits.archive_budget_bytes
        try:
            issued = await asyncio.to_thread(
                state.storage.archive, record.run_id, record.checkpoint_id, lifetime=lifetime,
                budget_bytes=budget)
        except ArchiveTooLargeError as error:
            raise ApiError(507, f"cannot archive checkpoint {record.tinker_path}: {error}", "server") from None
        if issued is None:
            raise ApiError(404, f"checkpoint {record.tinker_path} not found")
        token, expires = issued
        location = f"{state.public_base_url}/local/v1/archives/{token}.tar"
        return HttpResponse(302, b"", headers=[
            ("Location", location), ("Expires", format_datetime(expires.astimezone(UTC), usegmt=True))])

    async def download(self, call: Call) -> HttpResponse:
        token = call.params["file"].removesuffix(".tar")
        path = self._state.storage.archive_path(token)
        try:
            if path is None:
                raise FileNotFoundError
            body = await asyncio.to_thread(path.read_bytes)
        except OSError:  # unknown, expired, or evicted (the disk budget) just now
            raise ApiError(404, "archive not found or expired") from None
        return HttpResponse(200, body, content_type="application/x-tar")

    # ---- sessions and samplers ---------------------------------------------------------------
    async def list_sessions(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 20)
        sessions = self._state.storage.sessions()
        return ok(ListSessionsResponse(sessions=sessions[offset:offset + limit]))

    async def search_sessions(self, call: Call) -> HttpResponse:
        request = call.parse(SessionSearchRequest)
        storage, sessions = self._state.storage, self._state.sessions
        rows = []
        for session_id, created_at in storage.session_times().items():
            checkpoints = [c for run_id in storage.runs_of_session(session_id) for c in storage.checkpoints(run_id)]
            rows.append(SessionRow(session_id, created_at, sessions.is_live(session_id), len(checkpoints),
                                   sum(c.size_bytes for c in checkpoints)))
        return ok(search(request, rows))

    async def get_session(self, call: Call) -> HttpResponse:
        session_id = call.params["session_id"]
        storage = self._state.storage
        if not storage.has_session(session_id):
            raise ApiError(404, f"session {session_id!r} not found")
        return ok(GetSessionResponse(training_run_ids=storage.runs_of_session(session_id),
                                     sampler_ids=storage.samplers_of_session(session_id)))

    async def get_sampler(self, call: Call) -> HttpResponse:
        sampler_id = call.params["sampler_id"]
        record = self._state.storage.sampler(sampler_id)
        if record is None:
            raise ApiError(404, f"sampler {sampler_id!r} not found")
        fields: dict[str, object] = {"sampler_id": record.sampler_id, "base_model": record.base_model}
        if record.model_path is not None:
            fields["model_path"] = record.model_path
        return ok(GetSamplerResponse.model_validate(fields))
