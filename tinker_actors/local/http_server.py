"""A small HTTP/1.1 server on asyncio + h11.

It is written by hand (rather than on uvicorn) because fault injection needs control of the socket:
a handler may answer normally, drop the connection without answering, or hold the request open.
Keep-alive, ``Content-Length`` and chunked request bodies are supported; bodies larger than
``max_body_bytes`` are refused with 413 before they are read completely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

__all__ = [
    "DROP_CONNECTION",
    "DropConnection",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "RequestHandler",
    "json_response",
]

_log = logging.getLogger(__name__)

_READ_CHUNK = 65536
_REASONS = {
    200: b"OK", 204: b"No Content", 302: b"Found", 400: b"Bad Request", 401: b"Unauthorized",
    404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict",
    410: b"Gone", 413: b"Payload Too Large", 429: b"Too Many Requests", 500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class HttpRequest:
    """One parsed request. Header names are lower-case; a repeated header keeps its last value."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpResponse:
    """An answer to send. ``content_type`` is added unless the status has no body (204)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


class DropConnection:
    """Returned by a handler to close the socket without answering (a simulated network failure)."""


DROP_CONNECTION = DropConnection()

RequestHandler = Callable[[HttpRequest], Awaitable[HttpResponse | DropConnection]]


def json_response(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status=status, body=body, headers=list(headers or []))


class _BodyTooLarge(Exception):
    pass


class HttpServer:
    """Serves ``handler`` on ``host:port`` until :meth:`close`. One task per connection."""

    def __init__(self, handler: RequestHandler, *, host: str, port: int, max_body_bytes: int) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening and cut every open connection (held requests included)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
            self._server = None

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
            pass  # the peer went away or spoke garbage; nothing to answer
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug must cost one connection, never the server
            _log.exception("local service: connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        while True:
            try:
                request = await self._read_request(conn, reader, writer)
            except _BodyTooLarge:
                await self._send(conn, writer, HttpResponse(
                    413, b'{"error":"request body too large","category":"user"}'), close=True)
                await _drain(reader)
                return
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, HttpResponse(
                        400, b'{"error":"malformed HTTP request","category":"user"}'), close=True)
                return
            if request is None:
                return
            answer = await self._handler(request)
            if isinstance(answer, DropConnection):
                return
            await self._send(conn, writer, answer, close=False)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:  # e.g. curl with a big body
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                data = await reader.read(_READ_CHUNK)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                head = event
                length = _content_length(event.headers)
                if length is not None and length > self._max_body_bytes:
                    raise _BodyTooLarge
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body_bytes:
                    raise _BodyTooLarge
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _make_request(head, bytes(body))

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, response: HttpResponse,
                    *, close: bool) -> None:
        headers: list[tuple[str, str]] = list(response.headers)
        names = {name.lower() for name, _ in headers}
        if response.status != 204:
            if "content-type" not in names:
                headers.append(("Content-Type", response.content_type))
            headers.append(("Content-Length", str(len(response.body))))
        if close:
            headers.append(("Connection", "close"))
        reason = _REASONS.get(response.status, b"")
        try:
            out = conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
            if response.body and response.status != 204:
                out += conn.send(h11.Data(data=response.body))
            out += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        writer.write(out)
        await writer.drain()


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read what the client is still sending, so that closing does not reset the connection
    before it has read our answer (a client writes the whole body before it reads)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            while await reader.read(_READ_CHUNK):
                pass


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _make_request(head: h11.Request, body: bytes) -> HttpRequest:
    target = head.target.decode("latin-1")
    parts = urlsplit(target)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in head.headers}
    return HttpRequest(
        method=head.method.decode("ascii", "replace").upper(),
        target=target,
        path=unquote(parts.path),
        query=dict(parse_qsl(parts.query)),
        headers=headers,
        body=body,
    )
