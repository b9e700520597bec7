"""WireLog: what clients sent to the local service, for tests that pin what goes on the wire.

Off by default (one attribute check per request). While a capture is open, every request is
recorded as it arrived: method, path, query, headers (secrets left out), body, and the status it
was answered with, including requests refused on their headers alone (unknown endpoint, bad key)::

    with svc.wire_log.capture() as capture:
        ...                                   # any client, official or ours
    for record in capture.records:
        print(record.method, record.path, record.decoded())

:meth:`WireRecord.decoded` reads a body the way the service does: JSON, or a 0.38 protobuf
``ForwardBackwardRequest`` (zstd-compressed or not), as a plain dict with the official field names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tinker_actors.local.server.http_server import (
    Admission,
    DropConnection,
    HttpRequest,
    HttpResponse,
    RequestHandler,
)

__all__ = ["WireCapture", "WireLog", "WireRecord"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Header names never recorded, and any whose name contains one of these words: credentials.
_SECRET_HEADER_WORDS = ("key", "auth", "token", "secret", "cookie", "credential")


def _public_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items()
            if not any(word in name for word in _SECRET_HEADER_WORDS)}


@dataclass(frozen=True)
class WireRecord:
    """One request as the service received it. ``status`` is None when the connection was dropped."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names, credentials left out
    body: bytes
    status: int | None
    answer_content_type: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def decoded(self) -> Any:
        """The body as data: JSON as parsed, a protobuf request as a dict (bytes fields in base64,
        as protobuf's JSON mapping writes them), None for no body; raw bytes otherwise."""
        body = self.body
        if not body:
            return None
        if self.content_type == "application/x-protobuf":
            return _protobuf_dict(self.path, body)
        try:
            return json.loads(body)
        except ValueError:
            return body


def _protobuf_dict(path: str, body: bytes) -> dict[str, Any]:
    # Imported here: only tests decode, and the service itself never needs the dict form.
    from google.protobuf.json_format import MessageToDict

    from tinker_actors.wire.v0_38 import tinker_pb2

    if body.startswith(_ZSTD_MAGIC):  # still compressed (the server may also decompress before us)
        import zstandard

        body = zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 31)
    if not path.rstrip("/").endswith("/forward_backward"):
        raise ValueError(f"no protobuf request message is known for {path}")
    message = tinker_pb2.ForwardBackwardRequest()
    message.ParseFromString(body)
    decoded: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return decoded


@dataclass
class WireCapture:
    """The records of one :meth:`WireLog.capture`, in arrival order (read them after it closed, or
    with :meth:`snapshot` while it is open)."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _records: list[WireRecord] = field(default_factory=list)

    def add(self, record: WireRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[WireRecord]:
        with self._lock:
            return list(self._records)

    @property
    def records(self) -> list[WireRecord]:
        return self.snapshot()


class WireLog:
    """Wraps the service's request handler and admission check; records only during a capture."""

    def __init__(self) -> None:
        self._capture: WireCapture | None = None

    @contextmanager
    def capture(self) -> Iterator[WireCapture]:
        capture = WireCapture()
        self._capture = capture
        try:
            yield capture
        finally:
            if self._capture is capture:
                self._capture = None

    def wrap(self, handler: RequestHandler) -> RequestHandler:
        async def recorded(request: HttpRequest) -> HttpResponse | DropConnection:
            capture = self._capture
            if capture is None:
                return await handler(request)
            answer = await handler(request)
            capture.add(_record(request, answer))
            return answer

        return recorded

    def wrap_admission(self, admit: Admission) -> Admission:
        def recorded(request: HttpRequest) -> HttpResponse | None:
            refused = admit(request)
            capture = self._capture
            if refused is not None and capture is not None:
                capture.add(_record(request, refused))  # body unread: refused on the headers
            return refused

        return recorded


def _record(request: HttpRequest, answer: HttpResponse | DropConnection) -> WireRecord:
    response = answer if isinstance(answer, HttpResponse) else None
    return WireRecord(method=request.method, path=request.path, query=dict(request.query),
                      headers=_public_headers(request.headers), body=bytes(request.body),
                      status=None if response is None else response.status,
                      answer_content_type=None if response is None else response.content_type)
