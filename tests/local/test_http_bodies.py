"""Request bodies reach the handler whole and exact however they arrive: all at once with the head, in
small pieces, pipelined with the next request, after ``Expect: 100-continue``, or chunked; a body cut
short gets no answer and the server keeps serving. (A ``Content-Length`` body is read around the HTTP
parser, straight into the request: see ``HttpServer._read_body``.)

Every test talks to a real server on 127.0.0.1 through raw sockets, so that it can send bytes exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable

from tinker_actors.local.server.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer

Scenario = Callable[[HttpServer], Awaitable[bytes]]


async def _echo(request: HttpRequest) -> HttpResponse:
    """The body's length and digest, and the path (to tell pipelined requests apart)."""
    return HttpResponse(200, json.dumps({"path": request.path, "size": len(request.body),
                                         "sha": hashlib.sha256(request.body).hexdigest()}).encode())


def _serve(scenario: Scenario) -> bytes:
    async def main() -> bytes:
        server = HttpServer(_echo, host="127.0.0.1", port=0, limits=HttpLimits(body_timeout_s=5.0))
        await server.start()
        try:
            return await asyncio.wait_for(scenario(server), timeout=20)
        finally:
            await server.close()

    return asyncio.run(main())


def _post(path: str, body: bytes, *extra: bytes) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (path.encode(), len(body))
    return head + b"".join(extra) + b"\r\n" + body


async def _answers(reader: asyncio.StreamReader, count: int) -> list[dict[str, object]]:
    """``count`` keep-alive JSON answers read off the connection, in order."""
    answers: list[dict[str, object]] = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answers.append(json.loads(await reader.readexactly(length)))
    return answers


def _expected(path: str, body: bytes) -> dict[str, object]:
    return {"path": path, "size": len(body), "sha": hashlib.sha256(body).hexdigest()}


BIG = bytes(range(256)) * 12_289  # about 3 MB, not a multiple of any read size


def test_bodies_big_and_small_in_one_keep_alive_connection() -> None:
    bodies = [BIG, b"", b"x", BIG[:70_000], BIG[1:]]

    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        got = []
        for index, body in enumerate(bodies):
            writer.write(_post(f"/{index}", body))
            got += await _answers(reader, 1)
        writer.close()
        assert got == [_expected(f"/{index}", body) for index, body in enumerate(bodies)]
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_a_body_trickling_in_small_pieces() -> None:
    body = BIG[:200_000]

    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = _post("/slow", body)
        for start in range(0, len(request), 7_919):
            writer.write(request[start:start + 7_919])
            await writer.drain()
            if start % 10 == 0:
                await asyncio.sleep(0)
        assert await _answers(reader, 1) == [_expected("/slow", body)]
        writer.close()
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_pipelined_requests_after_a_body_are_each_answered() -> None:
    # Sent in one write: the parser sees the first head with the whole body and the requests after it.
    first, second = BIG[:5_000], b"second body"
    requests = _post("/one", first) + _post("/two", second) + b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n"

    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(requests)
        got = await _answers(reader, 3)
        writer.close()
        assert got == [_expected("/one", first), _expected("/two", second), _expected("/three", b"")]
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_a_client_waiting_for_100_continue_gets_it_then_its_answer() -> None:
    body = BIG[:100_000]

    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = _post("/expect", body, b"Expect: 100-continue\r\n")
        writer.write(request[: len(request) - len(body)])  # the head only
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        writer.write(body)
        assert await _answers(reader, 1) == [_expected("/expect", body)]
        writer.close()
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_a_chunked_body_is_read_whole() -> None:
    pieces = [BIG[:10_000], BIG[10_000:10_001], BIG[20_000:90_000]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"

    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        writer.write(_post("/after", b"next"))
        got = await _answers(reader, 2)
        writer.close()
        assert got == [_expected("/chunked", b"".join(pieces)), _expected("/after", b"next")]
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_a_body_cut_short_gets_no_answer_and_the_server_goes_on() -> None:
    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = _post("/cut", BIG)
        writer.write(request[: len(request) // 2])
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # closed without an answer
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_post("/next", b"fine"))
        assert await _answers(reader, 1) == [_expected("/next", b"fine")]
        writer.close()
        return b"ok"

    assert _serve(scenario) == b"ok"


def test_connection_close_is_obeyed_after_a_body() -> None:
    async def scenario(server: HttpServer) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_post("/last", BIG[:1000], b"Connection: close\r\n"))
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # to the end: the server closes
        writer.close()
        return answer

    answer = _serve(scenario)
    assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer.lower()
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == _expected("/last", BIG[:1000])
