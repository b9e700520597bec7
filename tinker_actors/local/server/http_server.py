"""A small HTTP/1.1 server on asyncio + h11, safe to expose to other users of a machine.

It is written by hand (rather than on uvicorn) because fault injection needs control of the socket:
a handler may answer normally, drop the connection without answering, or hold the request open.
Keep-alive, ``Content-Length`` and chunked request bodies are supported.

What keeps one client from hurting the others (all limits in :class:`HttpLimits`):

- the headers of a request must arrive within ``header_timeout_s`` (a slowloris client trickling
  header bytes is cut off with 408), its body within ``body_timeout_s`` of the headers (408), and an
  idle keep-alive connection is closed after ``idle_timeout_s``. The time a handler takes (a
  long-poll) is the server's own wait and never counts as idleness. A client that reads nothing of
  our answer for ``send_timeout_s`` is disconnected;
- headers larger than ``max_header_bytes`` get 431, bodies larger than ``max_body_bytes`` get 413
  (from ``Content-Length`` before any body byte is read; a chunked body as soon as it passes the cap);
- an ``admit`` check runs once the headers are in: a request it refuses (unknown route, missing API
  key) is answered at once and its body is never read;
- at most ``max_connections`` connections are open. At the cap, a new connection first takes the
  place of the connection that is idle (or still sending its headers) the longest, if that has lasted
  half a second; otherwise the newcomer gets 503 + ``Retry-After``;
- a handler that raises costs one generic 500 answer: no exception text, no paths, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from tinker_actors.errors import InvalidInputError

__all__ = [
    "DEFAULT_LIMITS",
    "DROP_CONNECTION",
    "Admission",
    "DropConnection",
    "HttpLimits",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "RequestHandler",
    "json_response",
]

_log = logging.getLogger(__name__)

_READ_CHUNK = 65536
_BODY_READ = 1 << 20  # at most this much of a body per read (a read takes what has arrived)
# Answers are written in slices of this size, each of which must be taken by the client within
# send_timeout_s: a slow reader of a large download keeps going, a reader that stopped is cut off.
_WRITE_SLICE = 65536
# After an early refusal the client may still be sending its body: read and discard it this long, so
# that closing does not reset the connection before the client has read our answer.
_LINGER_S = 2.0
# A connection is not reaped in its first moments in a phase: a real client sends its request right
# after connecting, and a flood of new connections must not keep closing each other's (or its) place.
_REAP_GRACE_S = 0.5
_REASONS = {
    200: b"OK", 204: b"No Content", 302: b"Found", 400: b"Bad Request", 401: b"Unauthorized",
    404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict",
    410: b"Gone", 413: b"Payload Too Large", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}
_INTERNAL_ERROR = b'{"error":"internal error in the local service","category":"server"}'
_OVERLOADED_BODY = b'{"error":"the local service has too many open connections; retry","category":"server"}'
# Written before the request is read (h11 cannot answer a request it has not seen), hence by hand.
_OVERLOADED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_OVERLOADED_BODY), _OVERLOADED_BODY))


@dataclass(frozen=True)
class HttpLimits:
    """Timeouts (seconds) and size/count limits of the server. The defaults suit a shared machine."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 60.0
    send_timeout_s: float = 60.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s", "send_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")


DEFAULT_LIMITS = HttpLimits()


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
# Called with a request whose body is not read yet (``body`` is empty): an answer refuses it at once.
Admission = Callable[[HttpRequest], HttpResponse | None]


def json_response(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status=status, body=body, headers=list(headers or []))


class _Refusal(Exception):
    """Answer this and close: the request cannot be served (its body may be unread)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _refusal(status: int, message: str) -> _Refusal:
    return _Refusal(HttpResponse(status, json.dumps({"error": message, "category": "user"}).encode()))


class _Phase(enum.IntEnum):
    """Where a connection is; the value orders who is reaped first when the server is full."""

    CLOSING = 0  # answered and closing: reaped first
    IDLE = 1  # waiting for the first byte of a request
    HEADERS = 2  # receiving headers (a real client sends them at once; a slowloris client does not)
    BODY = 3  # receiving an admitted body: never reaped (bounded by body_timeout_s)
    BUSY = 4  # the handler runs or the answer is written: never reaped


_REAPABLE = (_Phase.CLOSING, _Phase.IDLE, _Phase.HEADERS)


@dataclass(eq=False)
class _Connection:
    task: asyncio.Task[None]
    phase: _Phase
    since: float  # loop time at which the current phase began
    # Set when a request's body was read around the HTTP parser (_read_body): the next request starts on
    # a new parser, fed first with these bytes (what came after the body, if the client pipelined).
    carry: bytes | None = None

    def enter(self, phase: _Phase) -> None:
        self.phase = phase
        self.since = asyncio.get_running_loop().time()


class HttpServer:
    """Serves ``handler`` on ``host:port`` until :meth:`close`. One task per connection."""

    def __init__(self, handler: RequestHandler, *, host: str, port: int, limits: HttpLimits = DEFAULT_LIMITS,
                 admit: Admission | None = None) -> None:
        self._handler = handler
        self._admit = admit
        self._host = host
        self._port = port
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._overflow: set[asyncio.Task[None]] = set()  # connections being answered 503
        self._warned_full = False

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, reuse_address=True)

    async def close(self) -> None:
        """Stop listening and cut every open connection (held requests included)."""
        if self._server is not None:
            self._server.close()
        tasks = [*self._connections, *self._overflow]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2.0)
            self._server = None

    # ---- connections -------------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._limits.max_connections and not self._reap_one():
            await self._refuse_overloaded(task, reader, writer)
            return
        state = _Connection(task, _Phase.IDLE, asyncio.get_running_loop().time())
        self._connections[task] = state
        try:
            await self._serve(state, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError, TimeoutError):
            pass  # the peer went away, spoke garbage or stopped reading; nothing to answer
        except asyncio.CancelledError:
            pass  # reaped, or the server is closing
        except Exception:  # a bug must cost one connection, never the server
            _log.exception("local service: connection failed")
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _reap_one(self) -> bool:
        """Close the connection that waits the longest without a request in progress, if any."""
        now = asyncio.get_running_loop().time()
        candidates = [c for c in self._connections.values()
                      if c.phase is _Phase.CLOSING or (c.phase in _REAPABLE and now - c.since >= _REAP_GRACE_S)]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: (c.phase, c.since))
        del self._connections[victim.task]  # its place is free now; the task ends on its own
        victim.task.cancel()
        _log.debug("local service: connection limit reached; closed a connection in phase %s", victim.phase.name)
        return True

    async def _refuse_overloaded(self, task: asyncio.Task[None], reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        if not self._warned_full:
            self._warned_full = True
            _log.warning("local service: all %d connections are busy; new connections get 503 "
                         "(max_connections)", self._limits.max_connections)
        if len(self._overflow) >= self._limits.max_connections:  # a flood: do not even answer
            writer.transport.abort()
            return
        self._overflow.add(task)
        try:
            writer.write(_OVERLOADED)
            await _linger(reader, writer)
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            self._overflow.discard(task)
            writer.close()

    async def _serve(self, state: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)
        first = True
        while True:
            try:
                request = await self._read_request(state, conn, reader, writer, first=first)
            except _Refusal as refusal:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, refusal.response, close=True)
                    state.enter(_Phase.CLOSING)
                    await _linger(reader, writer)
                return
            if request is None:
                return
            state.enter(_Phase.BUSY)
            answer = await self._answer(request)
            if isinstance(answer, DropConnection):
                return
            await self._send(conn, writer, answer, close=False)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            if state.carry is not None:  # this parser never saw the body: the next request gets a new one
                conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)
                if state.carry:
                    conn.receive_data(state.carry)
                state.carry = None
            else:
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
            first = False

    async def _answer(self, request: HttpRequest) -> HttpResponse | DropConnection:
        try:
            return await self._handler(request)
        except Exception:
            _log.exception("local service: %s %s failed", request.method, request.path)
            return HttpResponse(500, _INTERNAL_ERROR)

    # ---- reading -----------------------------------------------------------------------------
    async def _read_request(self, state: _Connection, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, *, first: bool) -> HttpRequest | None:
        """The next request, or None when the connection should close quietly (peer gone, idle).

        Raises :class:`_Refusal` for a request to answer and close without serving."""
        limits = self._limits
        loop = asyncio.get_running_loop()
        state.enter(_Phase.IDLE)
        # A new connection has header_timeout_s for its whole first request head; a kept-alive one may
        # wait idle_timeout_s for the next request, then has header_timeout_s from its first byte.
        header_deadline = state.since + limits.header_timeout_s
        head: h11.Request | None = None
        try:
            head = await self._read_head(state, conn, reader, first=first, header_deadline=header_deadline)
        except h11.RemoteProtocolError as error:
            status = error.error_status_hint if error.error_status_hint in (400, 431) else 400
            raise _refusal(status, "request headers too large" if status == 431 else "malformed HTTP request") \
                from None
        if head is None:
            return None
        if _head_size(head) > limits.max_header_bytes:  # h11 only limits a head still incomplete
            raise _refusal(431, "request headers too large")
        if _has_body(head.headers):  # refuse what would be refused anyway before reading the body
            if self._admit is not None and (refused := self._admit(_make_request(head, b""))) is not None:
                raise _Refusal(refused)
            length = _content_length(head.headers)
            if length is not None and length > limits.max_body_bytes:
                raise _refusal(413, "request body too large")
        state.enter(_Phase.BODY)
        length = _content_length(head.headers)
        if length is not None and not _chunked(head.headers):
            try:
                async with asyncio.timeout_at(loop.time() + limits.body_timeout_s):
                    body = await self._read_body(state, conn, reader, writer, length)
            except TimeoutError:
                raise _refusal(408, "the request body did not arrive in time") from None
            return None if body is None else _make_request(head, body)
        # A chunked body goes through the parser. The pieces are joined once at the end: a bytearray grown
        # piece by piece is copied again and again as it outgrows its allocation.
        parts: list[bytes | bytearray] = []
        size = 0
        try:
            async with asyncio.timeout_at(loop.time() + limits.body_timeout_s):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        if conn.they_are_waiting_for_100_continue:  # e.g. curl with a big body
                            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                        conn.receive_data(await reader.read(_READ_CHUNK))
                    elif isinstance(event, h11.Data):
                        parts.append(event.data)
                        size += len(event.data)
                        if size > limits.max_body_bytes:
                            raise _refusal(413, "request body too large")
                    elif isinstance(event, h11.EndOfMessage):
                        return _make_request(head, b"".join(parts))
                    else:  # ConnectionClosed in the middle of a body
                        return None
        except TimeoutError:
            raise _refusal(408, "the request body did not arrive in time") from None
        except h11.RemoteProtocolError:
            raise _refusal(400, "malformed HTTP request body") from None

    @staticmethod
    async def _read_body(state: _Connection, conn: h11.Connection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, length: int) -> bytes | None:
        """A body of ``length`` bytes (``Content-Length``), read around the parser: its pieces as they
        arrive, joined once (through h11 each piece was copied four more times, and a 4 MB body was a third
        of the service's work on a forward_backward). None if the peer closed before the end."""
        if conn.they_are_waiting_for_100_continue:  # e.g. curl with a big body
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        buffered = conn.trailing_data[0]  # what arrived with the head
        if len(buffered) >= length:
            state.carry = buffered[length:]
            return buffered[:length]
        parts = [buffered]
        remaining = length - len(buffered)
        while remaining:
            piece = await reader.read(min(remaining, _BODY_READ))
            if not piece:
                return None
            parts.append(piece)
            remaining -= len(piece)
        state.carry = b""
        return b"".join(parts)

    async def _read_head(self, state: _Connection, conn: h11.Connection, reader: asyncio.StreamReader, *,
                         first: bool, header_deadline: float) -> h11.Request | None:
        loop = asyncio.get_running_loop()
        event = conn.next_event()
        if event is h11.NEED_DATA and not conn.trailing_data[0]:
            wait_until = header_deadline if first else state.since + self._limits.idle_timeout_s
            try:
                async with asyncio.timeout_at(wait_until):
                    data = await reader.read(_READ_CHUNK)
            except TimeoutError:
                return None  # idle (or never spoke): close without a word, as HTTP servers do
            if not first:
                header_deadline = loop.time() + self._limits.header_timeout_s
            conn.receive_data(data)
            event = conn.next_event()
        state.enter(_Phase.HEADERS)
        try:
            async with asyncio.timeout_at(header_deadline):
                while event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(_READ_CHUNK))
                    event = conn.next_event()
        except TimeoutError:
            raise _refusal(408, "the request headers did not arrive in time") from None
        if isinstance(event, h11.Request):
            return event
        return None  # ConnectionClosed (or PAUSED, which cannot happen before a request)

    # ---- writing -----------------------------------------------------------------------------
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
        view = memoryview(out)
        for start in range(0, len(view), _WRITE_SLICE):
            writer.write(view[start:start + _WRITE_SLICE])
            async with asyncio.timeout(self._limits.send_timeout_s):  # a client that stopped reading
                await writer.drain()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read and discard what the client still sends for a short while, so that our
    answer is not lost to a connection reset (a client writes its whole body before it reads)."""
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(_LINGER_S):
            while await reader.read(_READ_CHUNK):
                pass


def _head_size(head: h11.Request) -> int:
    """The size of the request line and headers, as sent (give or take whitespace)."""
    return len(head.method) + len(head.target) + 12 + sum(len(name) + len(value) + 4 for name, value in head.headers)


def _has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() not in (b"0", b""):
            return True
    return False


def _chunked(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name == b"transfer-encoding" for name, _ in headers)


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
