"""REST endpoints: training runs, checkpoints (list, delete, publish, TTL, archive), sessions (and their
search, :mod:`.session_search`), samplers.

Every answer is about the caller's own records: another user's run, checkpoint, session or sampler
answers 404 with the body an unknown id gets. Published checkpoints are the exception: anyone may
read them (list them, their run with ``access_scope=accessible``, their archive) but only their owner
may change them (delete, publish, unpublish, TTL: 404 to anyone else, as the official service answers
"not found or user doesn't own the training run"). Listings take ``access_scope`` (``owned``, the
default: only the caller's; ``accessible``: for runs and checkpoints, also others' published ones;
sessions are never shared) and ``project_id`` (the project of the record's session; a session
created without one is in project ``local``).

A checkpoint id is ``weights/<name>``, ``sampler_weights/<name>`` or ``external_weights/<name>``, so
checkpoint routes capture two segments. Deletions, publications and TTL changes go to the audit log
(``audit_api.py``) with the caller as actor; so does an archive download (a read).
Already-public (or not public) checkpoints answer 400, never 409: the official SDK
retries 409 for minutes. The archive endpoint answers 302 to a tarball this service serves itself
at an unguessable, expiring URL (the official CLI downloads it with a plain GET, without a key).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, timedelta
from email.utils import format_datetime
from typing import Literal

from tinker_actors.local.api.routes import Router
from tinker_actors.local.api.session_search import SessionRow, SessionSearchRequest, search
from tinker_actors.local.engine.state import ApiError, Call, ServiceState, ok
from tinker_actors.local.engine.storage import ArchiveTooLargeError, CheckpointRecord, RunRecord, SessionRecord
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import (
    Checkpoint,
    CheckpointsListResponse,
    Cursor,
    GetSamplerResponse,
    ListSessionsResponse,
    SetCheckpointTtlRequest,
    TrainingRun,
    TrainingRunsResponse,
)

__all__ = ["RestApi", "checkpoint_model", "requested_checkpoint", "run_model"]

_CKPT = "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}"
_MAX_PAGE = 10_000
AccessScope = Literal["owned", "accessible"]
_SCOPES: tuple[AccessScope, ...] = ("owned", "accessible")
_KIND_SEGMENTS = ("weights", "sampler_weights", "external_weights")


def checkpoint_model(record: CheckpointRecord) -> Checkpoint:
    fields: dict[str, object] = {
        "checkpoint_id": record.checkpoint_id, "checkpoint_type": record.checkpoint_type,
        "time": record.time, "tinker_path": record.tinker_path, "size_bytes": record.size_bytes,
        "public": record.public,
    }
    if record.expires_at is not None:
        fields["expires_at"] = record.expires_at
    if record.user_metadata is not None:
        fields["user_metadata"] = record.user_metadata
    return Checkpoint.model_validate(fields)


def requested_checkpoint(state: ServiceState, call: Call, *, change: bool) -> CheckpointRecord:
    """The checkpoint the path (``{run_id}/checkpoints/{kind}/{name}``) names, if the caller may read it
    (``change``: change it, owner only); else 404 with the body of an unknown checkpoint."""
    run_id, kind, name = call.params["run_id"], call.params["kind"], call.params["name"]
    if kind not in _KIND_SEGMENTS:
        raise ApiError(400, f"checkpoint kind {kind!r} is not one of {', '.join(_KIND_SEGMENTS)}")
    record = state.storage.checkpoint_for(call.user, run_id, f"{kind}/{name}", change=change)
    if record is None:
        raise ApiError(404, f"checkpoint tinker://{run_id}/{kind}/{name} not found")
    return record


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


def _scope(call: Call) -> AccessScope:
    """The listing's ``access_scope`` (0.38 sends ``owned`` or ``accessible``; older SDKs none: ``owned``)."""
    value = call.request.query.get("access_scope", "owned")
    for scope in _SCOPES:
        if value == scope:
            return scope
    raise ApiError(400, f"access_scope must be 'owned' or 'accessible', got {value!r}")


def _project(call: Call) -> str | None:
    """The listing's ``project_id`` filter, if any."""
    value = call.request.query.get("project_id")
    if value is not None and not value:
        raise ApiError(400, "project_id must not be empty")
    return value


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
    def _visible_checkpoints(self, run: RunRecord, user: str) -> list[CheckpointRecord]:
        """The run's checkpoints ``user`` may see, newest first: all of their own run's, else the published ones."""
        records = self._state.storage.checkpoints(run.run_id)
        return records if run.owner == user else [r for r in records if r.public]

    def _readable_run(self, run_id: str, user: str, scope: AccessScope) -> RunRecord:
        """``user``'s run, or with ``accessible`` another's that has published checkpoints; else 404 as unknown."""
        run = self._state.storage.run(run_id)
        if run is None or (run.owner != user and (scope != "accessible" or not self._visible_checkpoints(run, user))):
            raise ApiError(404, f"training run {run_id!r} not found")
        return run

    def _run_model(self, run: RunRecord, user: str) -> TrainingRun:
        visible = self._visible_checkpoints(run, user)
        last = next((r for r in visible if r.kind == "weights"), None)
        last_sampler = next((r for r in visible if r.kind == "sampler_weights"), None)
        return run_model(run, last, last_sampler)

    def _listed_runs(self, call: Call) -> list[RunRecord]:
        """The runs a listing shows: the caller's (plus others' published ones with ``accessible``), in the
        ``project_id`` asked for."""
        storage, user = self._state.storage, call.user
        scope, project = _scope(call), _project(call)
        published = storage.published_run_ids() if scope == "accessible" else set()
        runs = [r for r in storage.runs() if r.owner == user or r.run_id in published]
        if project is not None:
            runs = [r for r in runs if storage.session_project(r.session_id) == project]
        return runs

    async def list_runs(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 20)
        runs = self._listed_runs(call)
        window = runs[offset:offset + limit]
        return ok(TrainingRunsResponse(
            training_runs=[self._run_model(r, call.user) for r in window],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(runs))))

    async def get_run(self, call: Call) -> HttpResponse:
        run = self._readable_run(call.params["run_id"], call.user, _scope(call))
        return ok(self._run_model(run, call.user))

    # ---- checkpoints -------------------------------------------------------------------------
    async def run_checkpoints(self, call: Call) -> HttpResponse:
        """The run's checkpoints: all of the caller's own run; of another's run, its published ones (404 if none)."""
        run = self._readable_run(call.params["run_id"], call.user, "accessible")
        records = self._visible_checkpoints(run, call.user)
        return ok(CheckpointsListResponse(checkpoints=[checkpoint_model(r) for r in records]))

    async def user_checkpoints(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 100)
        user, runs = call.user, self._listed_runs(call)
        shown = {r.run_id: r.owner == user for r in runs}  # run id -> whether all its checkpoints show
        records = [r for r in self._state.storage.checkpoints()  # newest first
                   if r.run_id in shown and (shown[r.run_id] or r.public)]
        window = records[offset:offset + limit]
        return ok(CheckpointsListResponse(
            checkpoints=[checkpoint_model(r) for r in window],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(records))))

    def _checkpoint(self, call: Call, *, change: bool) -> CheckpointRecord:
        return requested_checkpoint(self._state, call, change=change)

    async def delete_checkpoint(self, call: Call) -> HttpResponse:
        self._state.storage.delete_checkpoint(self._checkpoint(call, change=True), actor=call.user)
        return HttpResponse(204)

    def _audit(self, event: str, call: Call, record: CheckpointRecord, **details: object) -> None:
        self._state.storage.audit.record(event, actor=call.user, owner=call.user, tinker_path=record.tinker_path,
                                         training_run_id=record.run_id, checkpoint_type=record.checkpoint_type,
                                         **details)

    def _modify(self, call: Call, change: Callable[[CheckpointRecord], CheckpointRecord]) -> CheckpointRecord:
        """Apply ``change`` to the checkpoint's current version, atomically (see Storage.modify_checkpoint)."""
        record = self._checkpoint(call, change=True)
        updated = self._state.storage.modify_checkpoint(record.run_id, record.checkpoint_id, change)
        if updated is None:
            raise ApiError(404, f"checkpoint {record.tinker_path} not found")
        return updated

    async def publish(self, call: Call) -> HttpResponse:
        def make_public(record: CheckpointRecord) -> CheckpointRecord:
            if record.public:
                raise ApiError(400, f"checkpoint {record.tinker_path} is already public")
            return replace(record, public=True)

        self._audit("checkpoint_publish", call, self._modify(call, make_public))
        return HttpResponse(204)

    async def unpublish(self, call: Call) -> HttpResponse:
        def make_private(record: CheckpointRecord) -> CheckpointRecord:
            if not record.public:
                raise ApiError(400, f"checkpoint {record.tinker_path} is not public")
            return replace(record, public=False)

        self._audit("checkpoint_unpublish", call, self._modify(call, make_private))
        return HttpResponse(204)

    async def set_ttl(self, call: Call) -> HttpResponse:
        record = self._checkpoint(call, change=True)
        req = call.parse(SetCheckpointTtlRequest)
        ttl = req.ttl_seconds
        limit = self._state.config.work_limits.max_ttl_seconds
        if ttl is not None and not 0 <= ttl <= limit:
            raise ApiError(400, f"ttl_seconds must be between 0 and {limit} (null keeps the checkpoint "
                                f"forever), got {ttl}")
        updated = self._state.storage.set_ttl(record, ttl)
        if updated is None:
            raise ApiError(404, f"checkpoint {record.tinker_path} not found")
        self._audit("checkpoint_ttl_set", call, updated, ttl_seconds=ttl,
                    expires_at=updated.expires_at.isoformat() if updated.expires_at is not None else None)
        return ok(checkpoint_model(updated))

    async def archive(self, call: Call) -> HttpResponse:
        """302 to the checkpoint version's archive (built once, then reused; see ``archives.py``).

        The ``Location`` is built from the service's configured address, never from the request's
        ``Host`` header (which the client controls). Another user's published checkpoint may be downloaded."""
        record = self._checkpoint(call, change=False)
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
        state.storage.audit_read(record, call.user, "download")
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
    def _listed_sessions(self, call: Call) -> list[SessionRecord]:
        """The caller's sessions, newest first, in the ``project_id`` asked for. ``accessible`` shows the same
        as ``owned``: sessions are never shared between users here (no shared projects)."""
        _scope(call)
        project = _project(call)
        records = self._state.storage.sessions(call.user)
        return records if project is None else [r for r in records if r.project == project]

    async def list_sessions(self, call: Call) -> HttpResponse:
        limit, offset = _page(call, 20)
        records = self._listed_sessions(call)
        return ok(ListSessionsResponse(sessions=[r.session_id for r in records[offset:offset + limit]]))

    async def search_sessions(self, call: Call) -> HttpResponse:
        request = call.parse(SessionSearchRequest)
        storage, sessions = self._state.storage, self._state.sessions
        rows = []
        for record in storage.sessions(call.user):
            session_id = record.session_id
            checkpoints = [c for run_id in storage.runs_of_session(session_id) for c in storage.checkpoints(run_id)]
            rows.append(SessionRow(
                session_id, record.created, record.owner, record.project, sessions.is_live(session_id),
                len(checkpoints), sum(c.size_bytes for c in checkpoints), display_name=record.display_name,
                user_metadata=record.user_metadata, finish_reason=record.finish_reason,
                finish_detail=record.finish_detail))
        return ok(search(request, rows))

    async def get_session(self, call: Call) -> HttpResponse:
        """The caller's session: its runs and samplers (0.6.3's answer), and those of ``user_metadata``,
        ``display_name`` (newer SDKs read them) and ``project_id`` that the session has (unset ones are left
        out, so a plain session's answer is 0.6.3's)."""
        session_id = call.params["session_id"]
        _scope(call)
        storage = self._state.storage
        record = storage.session(session_id, call.user)
        if record is None:
            raise ApiError(404, f"session {session_id!r} not found")
        answer: dict[str, object] = {"training_run_ids": storage.runs_of_session(session_id),
                                     "sampler_ids": storage.samplers_of_session(session_id)}
        for name, value in (("user_metadata", record.user_metadata), ("display_name", record.display_name),
                            ("project_id", record.project_id)):
            if value is not None:
                answer[name] = value
        return HttpResponse(200, json.dumps(answer).encode())

    async def get_sampler(self, call: Call) -> HttpResponse:
        sampler_id = call.params["sampler_id"]
        record = self._state.storage.sampler_of(sampler_id, call.user)
        if record is None:
            raise ApiError(404, f"sampler {sampler_id!r} not found")
        fields: dict[str, object] = {"sampler_id": record.sampler_id, "base_model": record.base_model}
        if record.model_path is not None:
            fields["model_path"] = record.model_path
        return ok(GetSamplerResponse.model_validate(fields))
