"""A small scripted HTTP/1.1 server on 127.0.0.1 for the HTTP layer's tests.

Real sockets, asyncio + h11, in a background thread with its own event loop. Each (method, path)
gets a script: a list of :class:`Reply` handed out in order, the last one repeating. Every request
is recorded (method, path, headers, body, arrival time), so tests can check what went over the wire
and when.

    with ScriptedServer() as server:
        server.script("POST", "/api/v1/x", Reply(500), Reply(200, {"ok": True}))
        ... call server.url + "/api/v1/x" ...
        assert len(server.requests("/api/v1/x")) == 2
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import h11

__all__ = ["RecordedRequest", "Reply", "ScriptedServer"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` may be bytes, str, or anything JSON-encodable."""

    status: int = 200
    body: Any = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0    # seconds to wait before answering
    drop: bool = False    # close the connection instead of answering (after ``delay``)
    trickle: float = 0.0  # if set, send the body one byte at a time, this many seconds apart

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    target: str          # path and query, as sent
    headers: list[tuple[str, str]]  # lower-case names, in order, duplicates kept
    body: bytes
    at: float            # time.monotonic() when the request was complete

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


_NOT_SCRIPTED = Reply(404, {"detail": "not scripted"})


class ScriptedServer:
    """The server; a context manager that starts and stops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[Reply]] = {}
        self._requests: list[RecordedRequest] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scripted-server", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in order; the last one repeats forever."""
        if not replies:
            raise ValueError("script at least one reply")
        with self._lock:
            self._scripts[(method.upper(), path)] = deque(replies)

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """The requests received so far (for one path, without query, if given)."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def _next_reply(self, method: str, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get((method, path))
            if script is None:
                return _NOT_SCRIPTED
            return script.popleft() if len(script) > 1 else script[0]

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            pass  # the client went away, or we are shutting down
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed, or PAUSED after a closed cycle
                    return
            assert request is not None
            method = request.method.decode()
            target = request.target.decode()
            recorded = RecordedRequest(
                method, target, [(k.decode().lower(), v.decode()) for k, v in request.headers], bytes(body),
                time.monotonic())
            with self._lock:
                self._requests.append(recorded)
            reply = self._next_reply(method, recorded.path)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.drop:
                writer.transport.abort()
                return
            payload, content_type = reply.encoded()
            extra = {name.lower(): value for name, value in reply.headers.items()}
            headers = [("content-type", extra.pop("content-type", content_type))]
            if reply.status not in (204, 304):
                headers.append(("content-length", str(len(payload))))
            else:
                payload = b""
            headers.extend(extra.items())
            writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)))
            if payload and reply.trickle:
                for index in range(len(payload)):
                    writer.write(conn.send(h11.Data(data=payload[index:index + 1])))
                    await writer.drain()
                    await asyncio.sleep(reply.trickle)
            elif payload:
                writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
