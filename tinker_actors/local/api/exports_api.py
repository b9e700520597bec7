"""What the official 0.38 SDK downloads through signed URLs: external weights files and session traces.

* ``GET /api/v1/training_runs/{run}/checkpoints/external_weights/{name}/external_weights_urls`` answers
  ``{"urls": {file: url}, "expires"}`` (``RestClient.get_external_weights_urls``, what ``tinker checkpoint
  download`` fetches since 0.38): one key-less URL per file of the checkpoint, for its owner or, once
  published, for everyone. Another kind of checkpoint answers 400.
* ``GET /api/v1/sessions/{session_id}/trace_export`` answers ``{"status": "ready", "url"}``
  (``RestClient.export_session_trace``, ``tinker session export-trace``): the URL serves the session's
  requests up to this moment as a Chrome / Perfetto trace-event JSON file (``engine/trace.py``). Only the
  session's owner may export it (404 to others, as for an unknown session).

The URLs (``/local/v1/external_weights/<token>``, ``/local/v1/traces/<token>.json``) need no key: the
token is the secret. They expire after ``archive_lifetime_s`` (15 minutes by default), and a file URL stops
working as soon as its checkpoint is deleted or saved again. They are built from the service's configured
address, never from a request's ``Host`` header.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tinker_actors.local.api.rest_api import requested_checkpoint
from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.links import DownloadLinks
from tinker_actors.local.engine.state import ApiError, Call, ServiceState, ok
from tinker_actors.local.engine.trace import RequestTracer, trace_events_json
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types import ExternalWeightsUrlsResponse

__all__ = ["ExportsApi"]

_CKPT = "/api/v1/training_runs/{run_id}/checkpoints/{kind}/{name}"


@dataclass(frozen=True)
class _FileLink:
    run_id: str
    checkpoint_id: str
    version: str
    relative: str


@dataclass(frozen=True)
class _TraceLink:
    session_id: str
    until_us: int


class ExportsApi:
    def __init__(self, state: ServiceState, tracer: RequestTracer) -> None:
        self._state = state
        self._tracer = tracer
        self._files: DownloadLinks[_FileLink] = DownloadLinks()
        self._traces: DownloadLinks[_TraceLink] = DownloadLinks(max_links=10_000)

    def register(self, router: Router) -> None:
        router.add("GET", _CKPT + "/external_weights_urls", "get_external_weights_urls", self.external_weights_urls)
        router.add("GET", "/local/v1/external_weights/{token}", "external_weights_download", self.download_file,
                   auth=False, admin=True)
        router.add("GET", "/api/v1/sessions/{session_id}/trace_export", "export_session_trace", self.export_trace)
        router.add("GET", "/local/v1/traces/{file}", "trace_download", self.download_trace, auth=False, admin=True)

    @property
    def _lifetime(self) -> timedelta:
        return timedelta(seconds=self._state.config.archive_lifetime_s)

    # ---- external weights ----------------------------------------------------------------------
    async def external_weights_urls(self, call: Call) -> HttpResponse:
        record = requested_checkpoint(self._state, call, change=False)
        if record.kind != "external_weights":
            raise ApiError(400, f"checkpoint {record.tinker_path} is not external weights: only "
                                "tinker://<run>/external_weights/<name> checkpoints have file URLs")
        base = self._state.public_base_url
        urls: dict[str, str] = {}
        expires = None
        for relative in record.files:
            token, expires = self._files.issue(
                _FileLink(record.run_id, record.checkpoint_id, record.version, relative), self._lifetime)
            urls[relative] = f"{base}/local/v1/external_weights/{token}"
        if expires is None:
            raise ApiError(500, f"checkpoint {record.tinker_path} has no files", "server")
        self._state.storage.audit_read(record, call.user, "external_weights_urls")
        return ok(ExternalWeightsUrlsResponse(urls=urls, expires=expires))

    async def download_file(self, call: Call) -> HttpResponse:
        link = self._files.resolve(call.params["token"])
        record = (self._state.storage.checkpoint(link.run_id, link.checkpoint_id) if link is not None else None)
        if link is None or record is None or record.version != link.version:
            raise ApiError(404, "download link not found or expired")
        path: Path | None = self._state.storage.external_files(record).get(link.relative)
        try:
            if path is None:
                raise FileNotFoundError
            body = await asyncio.to_thread(path.read_bytes)
        except OSError:  # deleted or replaced just now
            raise ApiError(404, "download link not found or expired") from None
        return HttpResponse(200, body, content_type="application/octet-stream")

    # ---- session traces ------------------------------------------------------------------------
    async def export_trace(self, call: Call) -> HttpResponse:
        session_id = call.params["session_id"]
        if self._state.storage.session(session_id, call.user) is None:
            raise ApiError(404, f"session {session_id!r} not found")
        token, _ = self._traces.issue(_TraceLink(session_id, self._tracer.clock()), self._lifetime)
        url = f"{self._state.public_base_url}/local/v1/traces/{token}.json"
        # the official SDK polls this until "ready" (or "failed"): the local trace is ready at once
        return HttpResponse(200, json.dumps({"status": "ready", "url": url}).encode())

    async def download_trace(self, call: Call) -> HttpResponse:
        link = self._traces.resolve(call.params["file"].removesuffix(".json"))
        if link is None:
            raise ApiError(404, "trace not found or expired")
        events = self._tracer.events(link.session_id, link.until_us)  # copied here, on the service loop
        body = await asyncio.to_thread(trace_events_json, link.session_id, events, exported_at_us=link.until_us)
        return HttpResponse(200, body, content_type="application/json")

