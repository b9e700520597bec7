"""A lean HTTP/1.1 transport for httpx: asyncio protocols, keep-alive pooling, a small response parser.

Why: a sampling client is bound by the CPU of its I/O loop, and py-spy put about two thirds of that
loop inside httpcore and h11 (pool bookkeeping that re-scans every connection whenever a request
starts or ends, per-request event objects and state machines, anyio streams, a stream object per
body). This transport does what the Tinker API needs of HTTP/1.1 with far less Python per request:

* one :class:`asyncio.Protocol` per connection: the event loop hands it the bytes, it parses the
  answer as they arrive and wakes the request once, when the whole answer is there (an answer that
  fits in one read is parsed in one call); a connection the server closed is known to be closed the
  moment the loop sees it, so handing out an idle connection asks the kernel nothing;
* a pool per transport: a counter of connections in use, a LIFO list of idle ones per origin, a FIFO
  of waiters when the limit is reached; no scan of other requests or connections;
* the request head written with the body in one call (small bodies) or right before it (large ones).

What it keeps of httpx's contract: it sits under an ``httpx.AsyncClient`` (headers, params, cookies,
timeouts, content decoding and the layer's redirect rules are httpx's and the layer's as before); its
failures are httpx's exception types (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``WriteTimeout``, ``PoolTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``,
``LocalProtocolError``, ``UnsupportedProtocol``) raised for the same situations, and its timeouts are
httpx's: ``connect`` bounds opening a connection (TLS included), ``pool`` the wait for a free one, and
``read`` / ``write`` the longest gap between two bytes received / the wait for the socket to take more.

What it does not do (the :class:`~tinker_actors.http.pools.ClientPools` keep httpcore for these):
proxies, HTTP/2, request bodies of unknown length other than by chunked encoding. Answers are read
whole before they are handed over (the HTTP layer reads every body whole anyway).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import httpx

__all__ = ["Answer", "LeanTransport", "Origin", "origin_of", "request_head", "write_head"]

_MAX_HEAD_BYTES = 256 * 1024     # status line and headers of one answer (h11 allows 16 KiB by default)
_MAX_CHUNK_LINE = 4096           # a chunk-size line with its extensions
_JOIN_BELOW = 64 * 1024          # request bodies smaller than this go out in one write with their head
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_ASK_IDLE_AFTER = 1.0  # seconds idle after which a connection is checked with a system call before reuse

# Parser states of a connection.
_IDLE = 0           # no request in flight; any byte from the server makes the connection unusable
_HEAD = 1           # reading the status line and headers
_LENGTH = 2         # reading a body of known length
_CHUNKED = 3        # reading a chunked body
_UNTIL_CLOSE = 4    # reading a body that ends when the server closes the connection
_DONE = 5           # the answer is complete

Origin = tuple[str, str, int]
_RawHeaders = list[tuple[bytes, bytes]]


class Answer:
    """A complete answer, as parsed off the wire."""

    __slots__ = ("body", "headers", "reason", "reusable", "status", "version")

    def __init__(self, status: int, reason: bytes, version: bytes, headers: _RawHeaders, body: bytes,
                 reusable: bool) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.body = body
        self.reusable = reusable


class _Body(httpx.AsyncByteStream):
    """The already-read body of an answer, handed to httpx as its stream."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def aclose(self) -> None:
        return None


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, parses the answer as the loop delivers its bytes.

    One request at a time (no pipelining). ``usable`` says whether the pool may hand it out again.
    """

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._state = _IDLE
        self._head_request = False
        self._waiter: asyncio.Future[Answer] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._last_data = 0.0
        self._read_timer: asyncio.TimerHandle | None = None
        # The answer being parsed.
        self._buffer = b""                     # unparsed bytes (head, chunk framing)
        self._status = 0
        self._reason = b""
        self._version = b""
        self._headers: _RawHeaders = []
        self._keep_alive = True
        self._parts: list[bytes] = []          # body bytes received so far
        self._remaining = 0                    # body bytes still expected (_LENGTH), or of this chunk (_CHUNKED)
        self._chunk_step = 0                   # _CHUNKED: 0 size line, 1 data, 2 CRLF after data, 3 trailers

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._transport = None
        if self._state == _UNTIL_CLOSE and exc is None:
            self._finish(False)
        elif self._state in (_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE):
            self._fail(self._lost_error(exc))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(httpx.WriteError(str(exc) if exc else "the server closed the connection"))

    def eof_received(self) -> bool:
        if self._state == _UNTIL_CLOSE:
            self._finish(False)
        elif self._state in (_HEAD, _LENGTH, _CHUNKED):
            self._fail(self._lost_error(None))
        self._closed = True
        return False  # let the transport close itself

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        state = self._state
        if state == _LENGTH:  # the hot case of a large body: append, count
            self._parts.append(data)
            self._remaining -= len(data)
            if self._remaining <= 0:
                self._end_of_length_body()
            return
        if state == _HEAD:
            self._buffer = self._buffer + data if self._buffer else data
            self._parse_head()
        elif state == _CHUNKED:
            self._buffer = self._buffer + data if self._buffer else data
            self._parse_chunks()
        elif state == _UNTIL_CLOSE:
            self._parts.append(data)
        else:  # bytes nobody asked for (after an answer, or before a request): the connection is spoiled
            self._spoil()

    # -- used by the transport --

    @property
    def usable(self) -> bool:
        return not self._closed and self._state == _IDLE and self._transport is not None

    def peer_closed(self) -> bool:
        """Whether the socket has something to read while idle: the server closed it (or sent bytes nobody asked
        for) and the loop has not processed it yet. One ``poll`` system call."""
        transport = self._transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return True
        fd = sock.fileno()
        if fd < 0:
            return True
        if not hasattr(select, "poll"):  # pragma: no cover - Windows
            return bool(select.select([fd], [], [], 0)[0])
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self._closed = True
        transport = self._transport
        if transport is not None:
            transport.abort()  # drop unsent bytes at once: nothing more will be read from this connection

    async def exchange(self, method: bytes, head: bytes, body: bytes | None, stream: httpx.AsyncByteStream | None,
                       timeouts: Mapping[str, float | None]) -> Answer:
        """Send one request and read its whole answer."""
        transport = self._transport
        if transport is None or self._closed:
            raise httpx.ConnectError("the connection was closed before the request could be sent")
        self._reset(method == b"HEAD")
        waiter = self._waiter = self._loop.create_future()
        write_timeout = timeouts.get("write")
        if body is not None:
            if len(body) < _JOIN_BELOW:
                transport.write(head + body)
            else:
                transport.write(head)
                transport.write(body)
            if self._paused:
                await self._drained(write_timeout)
        else:
            transport.write(head)
            if stream is not None:
                await self._write_stream(stream, _sends_chunked(head), write_timeout)
        sent_all = not self._paused
        if not waiter.done():
            await self._read(waiter, timeouts.get("read"))
        answer: Answer = waiter.result()
        if not sent_all or self._paused:  # the server answered before taking the whole request
            answer.reusable = False
        return answer

    # -- writing --

    async def _write_stream(self, stream: httpx.AsyncByteStream, chunked: bool, timeout: float | None) -> None:
        for_wire = self._transport
        assert for_wire is not None
        async for part in stream:
            if self._closed:
                raise httpx.WriteError("the server closed the connection while the request was sent")
            if not part:
                continue
            for_wire.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            if self._paused:
                await self._drained(timeout)
        if chunked and not self._closed:
            for_wire.write(b"0\r\n\r\n")

    async def _drained(self, timeout: float | None) -> None:
        """Wait until the socket takes more bytes, or the answer is already complete (an early error answer:
        then the rest of the request is not sent)."""
        waiter = self._waiter
        while self._paused and not self._closed and not (waiter is not None and waiter.done()):
            drain = self._drain = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await drain
            except TimeoutError:
                raise httpx.WriteTimeout("timed out while sending the request") from None
            finally:
                self._drain = None
        if self._closed and not (waiter is not None and waiter.done()):
            raise httpx.WriteError("the server closed the connection while the request was sent")

    def _wake_writer(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- reading --

    async def _read(self, waiter: asyncio.Future[Answer], timeout: float | None) -> None:
        """Wait for the answer; ``timeout`` bounds each gap between two reads, as httpx's read timeout."""
        if timeout is None:
            await waiter
            return
        self._last_data = self._loop.time()
        self._read_timer = self._loop.call_at(self._last_data + timeout, self._check_read, timeout)
        try:
            await waiter
        finally:
            timer, self._read_timer = self._read_timer, None
            if timer is not None:
                timer.cancel()

    def _check_read(self, timeout: float) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        due = self._last_data + timeout
        if self._loop.time() >= due:
            self._read_timer = None
            waiter.set_exception(httpx.ReadTimeout("timed out while waiting for the answer"))
        else:
            self._read_timer = self._loop.call_at(due, self._check_read, timeout)

    def _reset(self, head_request: bool) -> None:
        self._state = _HEAD
        self._head_request = head_request
        self._buffer = b""
        self._headers = []
        self._parts = []
        self._keep_alive = True
        self._chunk_step = 0

    def _parse_head(self) -> None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD_BYTES:
                self._protocol_error("the answer's headers are too long")
            return
        lines = buffer[:end].split(b"\r\n")
        rest = buffer[end + 4:]
        version, _, tail = lines[0].partition(b" ")
        code, _, reason = tail.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            self._protocol_error(f"malformed status line {lines[0][:100]!r}")
            return
        status = int(code)
        headers: _RawHeaders = []
        length: bytes | None = None
        transfer: bytes | None = None
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
                self._protocol_error(f"malformed header line {line[:100]!r}")
                return
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if length is not None and length != value:
                    self._protocol_error("conflicting Content-Length headers")
                    return
                length = value
            elif lower == b"transfer-encoding":
                transfer = value if transfer is None else transfer + b"," + value
            elif lower == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if 100 <= status < 200:
            if status == 101:
                self._protocol_error("the server switched protocols (101), which this client does not speak")
                return
            self._buffer = b""  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            if rest:
                self.data_received(rest)
            return
        self._status, self._reason, self._version, self._headers = status, reason, version, headers
        self._keep_alive = keep_alive
        self._buffer = b""
        if self._head_request or status == 204 or status == 304:
            if rest:
                self._spoil()
            self._finish(keep_alive and not rest)
        elif transfer is not None:
            if transfer.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked":
                self._state = _CHUNKED
                self._remaining = 0
                self._chunk_step = 0
                if rest:
                    self._buffer = rest
                    self._parse_chunks()
            else:
                self._until_close(rest)
        elif length is not None:
            digits = length.split(b",")  # "5, 5" is a repeated header folded into one: all must agree
            if not all(d.strip(b" \t").isdigit() for d in digits) or len({d.strip(b" \t") for d in digits}) != 1:
                self._protocol_error(f"malformed Content-Length {length[:40]!r}")
                return
            size = int(digits[0])
            if len(rest) >= size:
                if len(rest) > size:  # more than the answer: nothing was asked for, the connection is spoiled
                    self._keep_alive = False
                self._parts = [rest[:size] if len(rest) > size else rest]
                self._finish(self._keep_alive)
            else:
                self._state = _LENGTH
                self._remaining = size - len(rest)
                self._parts = [rest] if rest else []
        else:
            self._until_close(rest)

    def _until_close(self, rest: bytes) -> None:
        self._state = _UNTIL_CLOSE
        self._keep_alive = False
        self._parts = [rest] if rest else []

    def _end_of_length_body(self) -> None:
        if self._remaining < 0:  # the last read held bytes past the body
            last = self._parts[-1]
            self._parts[-1] = last[: len(last) + self._remaining]
            self._keep_alive = False
        self._finish(self._keep_alive)

    def _parse_chunks(self) -> None:
        buffer = self._buffer
        at = 0
        size = len(buffer)
        while at < size:
            step = self._chunk_step
            if step == 1:  # chunk data
                take = min(self._remaining, size - at)
                self._parts.append(buffer[at:at + take])
                at += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_step = 2
                continue
            end = buffer.find(b"\r\n", at)
            if end < 0:
                if size - at > _MAX_CHUNK_LINE:
                    self._protocol_error("a chunk-size line is too long")
                    return
                break
            line = buffer[at:end]
            at = end + 2
            if step == 2:  # the CRLF closing a chunk's data
                if line:
                    self._protocol_error("chunk data longer than its size")
                    return
                self._chunk_step = 0
            elif step == 0:  # a size line, maybe with extensions
                digits = line.partition(b";")[0].strip(b" \t")
                try:
                    chunk = int(digits, 16)
                except ValueError:
                    chunk = -1
                if chunk < 0 or not digits or digits.strip(_HEX_DIGITS):
                    self._protocol_error(f"malformed chunk size {line[:40]!r}")
                    return
                if chunk == 0:
                    self._chunk_step = 3
                else:
                    self._remaining = chunk
                    self._chunk_step = 1
            elif not line:  # step 3: the empty line after the trailers ends the body
                if at < size:
                    self._keep_alive = False  # bytes after the answer: nobody asked for them
                self._buffer = b""
                self._finish(self._keep_alive)
                return
        self._buffer = buffer[at:] if at < size else b""

    def _finish(self, reusable: bool) -> None:
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._parts = []
        self._state = _IDLE if reusable else _DONE
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(self._status, self._reason, self._version, self._headers, body, reusable))
        self._wake_writer()

    def _fail(self, error: httpx.TransportError) -> None:
        self._state = _DONE
        self._parts = []
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._wake_writer()
        self.close()

    def _lost_error(self, exc: Exception | None) -> httpx.TransportError:
        if exc is not None:
            return httpx.ReadError(str(exc) or type(exc).__name__)
        if self._state == _HEAD and not self._buffer:
            return httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def _protocol_error(self, message: str) -> None:
        self._fail(httpx.RemoteProtocolError(message))

    def _spoil(self) -> None:
        self._keep_alive = False
        if self._state == _IDLE:
            self._state = _DONE
            self.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio for one event loop, with at most ``max_connections`` requests at once and
    up to ``max_keepalive`` idle connections kept (each for ``keepalive_expiry`` seconds at most).

    ``ssl_context`` makes the TLS context when the first ``https`` connection is opened (loading the CA
    bundle takes 10 to 150 ms: a plain-HTTP client never pays it)."""

    def __init__(self, *, max_connections: int, max_keepalive: int,
                 ssl_context: Callable[[], ssl.SSLContext] = ssl.create_default_context,
                 keepalive_expiry: float = 5.0) -> None:
        self._max = max(1, max_connections)
        self._max_idle = max(0, max_keepalive)
        self._make_ssl_context = ssl_context
        self._ssl_context: ssl.SSLContext | None = None
        self._expiry = keepalive_expiry
        self._in_use = 0
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._busy: set[_Connection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    def __repr__(self) -> str:
        return f"LeanTransport(in_use={self._in_use}, idle={self._idle_count}, max_connections={self._max})"

    @property
    def connections(self) -> int:
        """Open connections, in use and idle."""
        return len(self._busy) + self._idle_count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = origin_of(request.url)
        method, head, body, stream = request_head(request)
        answer = await self.exchange(origin, method, head, body, request.extensions.get("timeout") or {}, stream)
        return httpx.Response(answer.status, headers=answer.headers, stream=_Body(answer.body),
                              extensions={"http_version": answer.version, "reason_phrase": answer.reason})

    async def exchange(self, origin: Origin, method: bytes, head: bytes, body: bytes | None,
                       timeouts: Mapping[str, float | None], stream: httpx.AsyncByteStream | None = None) -> Answer:
        """Send one request (its head already written out, see :func:`write_head`) on a pooled connection to
        ``origin`` and read its whole answer. ``timeouts``: httpx's ``connect`` / ``read`` / ``write`` / ``pool``."""
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        loop = asyncio.get_running_loop()
        await self._take_slot(loop, timeouts.get("pool"))
        connection: _Connection | None = None
        try:
            connection = self._idle_connection(origin, loop)
            if connection is None:
                connection = await self._connect(origin, loop, timeouts.get("connect"))
            self._busy.add(connection)
            answer = await connection.exchange(method, head, body, stream, timeouts)
        except BaseException:
            if connection is not None:
                connection.close()
                self._busy.discard(connection)
            self._give_slot()
            raise
        self._busy.discard(connection)
        if answer.reusable and connection.usable and not self._closed:
            self._keep(connection, loop)
        else:
            connection.close()
        self._give_slot()
        return answer

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        for connection in list(self._busy):
            connection.close()
        self._busy.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpx.PoolTimeout("the transport was closed"))

    # -- the pool --

    async def _take_slot(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        if self._in_use < self._max and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_slot()  # granted a slot just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _give_slot(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the longest waiter: _in_use is unchanged
                return
        self._in_use -= 1

    def _idle_connection(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = loop.time()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to have been closed by the server
            self._idle_count -= 1
            idle_for = now - connection.idle_since
            # The loop learns of a close as soon as it polls; a connection idle for a while is also asked
            # directly, in case the server's idle timeout fired just now (as httpcore asks every time).
            if connection.usable and idle_for <= self._expiry and (
                    idle_for < _ASK_IDLE_AFTER or not connection.peer_closed()):
                return connection
            connection.close()
        return None

    def _keep(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        if self._max_idle == 0:
            connection.close()
            return
        connection.idle_since = loop.time()
        idle = self._idle.setdefault(connection.origin, [])
        idle.append(connection)
        self._idle_count += 1
        if self._idle_count > self._max_idle:
            self._close_oldest_idle()

    def _close_oldest_idle(self) -> None:
        oldest: list[_Connection] | None = None
        for connections in self._idle.values():
            if connections and (oldest is None or connections[0].idle_since < oldest[0].idle_since):
                oldest = connections
        if oldest is not None:
            oldest.pop(0).close()
            self._idle_count -= 1

    async def _connect(self, origin: Origin, loop: asyncio.AbstractEventLoop, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = scheme == "https"
        if tls and self._ssl_context is None:
            self._ssl_context = self._make_ssl_context()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin, loop), host, port,
                    ssl=self._ssl_context if tls else None, server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection


def _sends_chunked(head: bytes) -> bool:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            return value.strip().lower().endswith(b"chunked")
    return False


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.PoolTimeout("timed out waiting for a free connection"))


def origin_of(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` of a URL this transport can reach; ``UnsupportedProtocol`` otherwise."""
    scheme = url.scheme
    port = url.port or _DEFAULT_PORTS.get(scheme)
    if port is None:
        raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
    host = url.raw_host.decode("ascii")
    if not host:
        raise httpx.UnsupportedProtocol("Request URL is missing a host.")
    return scheme, host, port


def write_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers. Names and values must not break the framing: a CR, LF or NUL in them
    is refused (``LocalProtocolError``), as h11 refuses it."""
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    count = 0
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
        count += 1
    lines.append(b"\r\n")
    head = b"".join(lines)
    if head.count(b"\n") != count + 2 or head.count(b"\r") != count + 2 or b"\0" in head:
        raise httpx.LocalProtocolError("a request header name or value holds CR, LF or NUL")
    return head


def request_head(request: httpx.Request) -> tuple[bytes, bytes, bytes | None, httpx.AsyncByteStream | None]:
    """An httpx request's method, head, and body (or, for a streamed body, the stream to send chunked or
    as is, as its headers say)."""
    method = request.method.encode("ascii")
    head = write_head(method, request.url.raw_path, request.headers.raw)
    try:
        return method, head, request.content, None
    except httpx.RequestNotRead:
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise httpx.LocalProtocolError("the request body is not an async stream") from None
        return method, head, None, stream
