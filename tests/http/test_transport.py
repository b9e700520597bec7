"""The lean HTTP/1.1 transport and the lean httpx client on it, against raw sockets on 127.0.0.1.

Each test's server is a function of one accepted socket, run in a thread per connection, so that a test
can answer byte by byte, hang up, never read, or answer before the request is all sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tinker_actors.config import Config
from tinker_actors.http import Purpose
from tinker_actors.http.lean_client import LeanClient
from tinker_actors.http.pools import ClientPools
from tinker_actors.http.transport import LeanTransport

Handler = Callable[[socket.socket], None]


class RawServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handler`` in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10.0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # OSError: the client went away
            self._handler(conn)

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() (on Linux): shutdown() does, at once
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the accept thread did not end"


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def read_request(conn: socket.socket, pending: bytearray | None = None) -> tuple[bytes, bytes] | None:
    """One request (head, body by Content-Length) off ``conn``; ``None`` once the client closed it."""
    data = pending if pending is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    head = bytes(data[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(data) < end + length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    body = bytes(data[end:end + length])
    del data[:end + length]
    return head, body


def answering(*answers: bytes, pause: float = 0.0) -> Handler:
    """Answers each request on a connection with the next of ``answers`` (the last repeats), as given."""

    def handler(conn: socket.socket) -> None:
        pending = bytearray()
        index = 0
        while read_request(conn, pending) is not None:
            conn.sendall(answers[min(index, len(answers) - 1)])
            index += 1
            if pause:
                time.sleep(pause)

    return handler


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def transport(max_connections: int = 10, max_keepalive: int = 10) -> LeanTransport:
    return LeanTransport(max_connections=max_connections, max_keepalive=max_keepalive)


async def post(client: httpx.AsyncClient, url: str, body: bytes = b"{}", timeout: float = 5.0) -> httpx.Response:
    return await client.request("POST", url, content=body, timeout=httpx.Timeout(timeout))


# --- keep-alive and framing -------------------------------------------------------------------------


def test_a_connection_is_kept_alive_and_reused(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(answering(OK))

    async def main() -> list[bytes]:
        async with LeanClient(transport()) as client:
            return [(await post(client, server.url + "/x")).content for _ in range(5)]

    assert asyncio.run(main()) == [b"{}"] * 5
    assert server.connections == 1


def test_a_keepalive_connection_the_server_closed_is_not_reused(serve: Callable[[Handler], RawServer]) -> None:
    def one_answer_then_hang_up(conn: socket.socket) -> None:
        if read_request(conn) is not None:
            conn.sendall(OK)
            time.sleep(0.05)

    server = serve(one_answer_then_hang_up)

    async def main() -> list[int]:
        statuses = []
        async with LeanClient(transport(max_connections=1, max_keepalive=1)) as client:
            for _ in range(3):
                statuses.append((await post(client, server.url + "/x")).status_code)
                await asyncio.sleep(0.2)  # the server hangs up meanwhile; the loop tells the connection
        return statuses

    assert asyncio.run(main()) == [200, 200, 200]
    assert server.connections == 3


def test_a_connection_idle_a_while_is_asked_whether_the_server_closed_it(
        serve: Callable[[Handler], RawServer]) -> None:
    def one_answer_then_hang_up(conn: socket.socket) -> None:
        if read_request(conn) is not None:
            conn.sendall(OK)
            time.sleep(0.1)

    server = serve(one_answer_then_hang_up)

    async def main() -> int:
        async with LeanClient(transport(max_connections=1, max_keepalive=1)) as client:
            await post(client, server.url + "/x")
            time.sleep(1.2)  # blocks the loop: the server's close is not seen by it before the next request
            return (await post(client, server.url + "/x")).status_code

    assert asyncio.run(main()) == 200
    assert server.connections == 2


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_chunked_answer_with_extensions_and_trailers_split_anywhere(serve: Callable[[Handler], RawServer],
                                                                      step: int) -> None:
    answer = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
              b"5;ext=1\r\nhello\r\n1A\r\n" + b"z" * 26 + b"\r\n0\r\nx-trailer: yes\r\n\r\n")

    def handler(conn: socket.socket) -> None:
        pending = bytearray()
        while read_request(conn, pending) is not None:
            for at in range(0, len(answer), step):
                conn.sendall(answer[at:at + step])
                time.sleep(0.001)

    server = serve(handler)

    async def main() -> list[bytes]:
        async with LeanClient(transport()) as client:
            return [(await post(client, server.url + "/x")).content for _ in range(2)]

    assert asyncio.run(main()) == [b"hello" + b"z" * 26] * 2
    assert server.connections == 1  # the answer ended cleanly: the connection was reused


def test_an_answer_without_length_ends_when_the_server_closes(serve: Callable[[Handler], RawServer]) -> None:
    def handler(conn: socket.socket) -> None:
        if read_request(conn) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil")
            time.sleep(0.05)
            conn.sendall(b" the end")

    server = serve(handler)

    async def main() -> list[bytes]:
        async with LeanClient(transport()) as client:
            return [(await post(client, server.url + "/x")).content for _ in range(2)]

    assert asyncio.run(main()) == [b"until the end"] * 2
    assert server.connections == 2


def test_interim_answers_are_skipped_and_head_and_204_have_no_body(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(answering(
        b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
        b"HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n",  # the answer to a HEAD: no body follows
        OK))

    async def main() -> list[tuple[int, bytes]]:
        async with LeanClient(transport()) as client:
            first = await post(client, server.url + "/x")
            second = await post(client, server.url + "/x")
            third = await client.request("HEAD", server.url + "/x")
            fourth = await post(client, server.url + "/x")
            return [(r.status_code, r.content) for r in (first, second, third, fourth)]

    assert asyncio.run(main()) == [(200, b"{}"), (204, b""), (200, b""), (200, b"{}")]
    assert server.connections == 1


def test_a_large_body_both_ways(serve: Callable[[Handler], RawServer]) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB

    def echo(conn: socket.socket) -> None:
        pending = bytearray()
        while (request := read_request(conn, pending)) is not None:
            body = request[1]
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)

    server = serve(echo)

    async def main() -> list[bool]:
        async with LeanClient(transport()) as client:
            return [(await post(client, server.url + "/x", payload)).content == payload for _ in range(2)]

    assert asyncio.run(main()) == [True, True]
    assert server.connections == 1


# --- what goes wrong --------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "message"), [
    (b"", "Server disconnected without sending a response"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "without sending complete message body"),
    (b"HTTP/1.1 2OO OK\r\ncontent-length: 0\r\n\r\n", "malformed status line"),
    (b"ICY 200 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", "conflicting Content-Length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "malformed chunk size"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello", "without sending complete message body"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
])
def test_broken_answers_are_remote_protocol_errors(serve: Callable[[Handler], RawServer], answer: bytes,
                                                   message: str) -> None:
    def handler(conn: socket.socket) -> None:
        if read_request(conn) is not None:
            conn.sendall(answer)
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.2)

    server = serve(handler)

    async def main() -> None:
        async with LeanClient(transport()) as client:
            with pytest.raises(httpx.RemoteProtocolError, match=message) as caught:
                await post(client, server.url + "/x")
            assert caught.value.request.url == server.url + "/x"

    asyncio.run(main())


def test_a_refused_connection_is_a_connect_error_naming_the_request() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def main() -> None:
        async with LeanClient(transport()) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await post(client, f"http://127.0.0.1:{port}/x")
            assert caught.value.request.method == "POST"

    asyncio.run(main())


def test_read_timeout_bounds_each_gap_not_the_whole_answer(serve: Callable[[Handler], RawServer]) -> None:
    body = b"x" * 12

    def trickle(conn: socket.socket) -> None:
        if read_request(conn) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
            for byte in body:  # 12 gaps of 0.05 s: 0.6 s in all, each gap well within 0.3 s
                time.sleep(0.05)
                conn.sendall(bytes([byte]))

    def silent(conn: socket.socket) -> None:
        read_request(conn)
        time.sleep(3)

    trickling, hanging = serve(trickle), serve(silent)

    async def main() -> float:
        async with LeanClient(transport()) as client:
            assert (await post(client, trickling.url + "/x", timeout=0.3)).content == body
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await post(client, hanging.url + "/x", timeout=0.2)
            return time.monotonic() - started

    assert asyncio.run(main()) < 1.5


def test_write_timeout_when_the_server_does_not_read(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(lambda conn: time.sleep(3))  # accepts, never reads

    async def main() -> None:
        async with LeanClient(transport()) as client:
            with pytest.raises(httpx.WriteTimeout):
                await post(client, server.url + "/x", b"x" * (64 * 1024 * 1024), timeout=0.3)

    asyncio.run(main())


def test_an_early_answer_is_returned_and_its_connection_not_reused(serve: Callable[[Handler], RawServer]) -> None:
    def refuse_large(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        if b"content-length: 2\r\n" in data.lower():
            read_request(conn, bytearray(data))
            conn.sendall(OK)
            return
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbig")
        time.sleep(0.5)

    server = serve(refuse_large)

    async def main() -> list[int]:
        async with LeanClient(transport(max_connections=1)) as client:
            first = await post(client, server.url + "/x", b"x" * (32 * 1024 * 1024))
            second = await post(client, server.url + "/x")
            return [first.status_code, second.status_code]

    assert asyncio.run(main()) == [413, 200]
    assert server.connections == 2


def test_headers_that_would_break_the_framing_are_refused_unsent(serve: Callable[[Handler], RawServer]) -> None:
    server = serve(answering(OK))

    async def main() -> None:
        async with LeanClient(transport()) as client:
            with pytest.raises(httpx.LocalProtocolError):
                await client.request("POST", server.url + "/x", content=b"{}",
                                     headers={"x-a": "1\r\nx-injected: yes"})

    asyncio.run(main())
    assert server.connections == 0


# --- TLS ---------------------------------------------------------------------------------------------

# A self-signed certificate for 127.0.0.1, for these tests only (openssl req -x509 -newkey ec
# -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 -subj /CN=127.0.0.1
# -addext subjectAltName=IP:127.0.0.1).
TLS = Path(__file__).parent / "tls"


def test_https_with_keep_alive_and_certificate_checks(serve: Callable[[Handler], RawServer]) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(TLS / "localhost.crt", TLS / "localhost.key")
    plain = answering(OK)

    def tls(conn: socket.socket) -> None:
        with server_context.wrap_socket(conn, server_side=True) as wrapped:
            plain(wrapped)

    server = serve(tls)
    url = f"https://127.0.0.1:{server.port}/x"

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(TLS / "localhost.crt"))

    async def main() -> None:
        async with LeanClient(LeanTransport(max_connections=4, max_keepalive=4, ssl_context=trusting)) as client:
            assert [(await post(client, url)).content for _ in range(3)] == [b"{}"] * 3
        async with LeanClient(transport()) as client:  # the system's CAs do not know this certificate
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(client, url)

    asyncio.run(main())
    assert server.connections == 2  # one kept alive for three requests, one refused by the client


# --- the pool -----------------------------------------------------------------------------------------


def test_the_connection_limit_queues_requests_and_the_pool_timeout_bounds_the_wait(
        serve: Callable[[Handler], RawServer]) -> None:
    def slow(conn: socket.socket) -> None:
        pending = bytearray()
        while read_request(conn, pending) is not None:
            time.sleep(0.3)
            conn.sendall(OK)

    server = serve(slow)

    async def main() -> None:
        async with LeanClient(transport(max_connections=1)) as client:
            started = time.monotonic()
            answers = await asyncio.gather(*(post(client, server.url + "/x") for _ in range(3)))
            assert [a.status_code for a in answers] == [200] * 3
            assert time.monotonic() - started >= 0.85  # one at a time
            waiting = client.request("POST", server.url + "/x", content=b"{}",
                                     timeout=httpx.Timeout(5.0, pool=0.1))
            with pytest.raises(httpx.PoolTimeout):
                await asyncio.gather(post(client, server.url + "/x"), waiting)

    asyncio.run(main())
    assert server.connections == 1


def test_a_cancelled_request_frees_its_connection_slot(serve: Callable[[Handler], RawServer]) -> None:
    def first_hangs(conn: socket.socket) -> None:
        pending = bytearray()
        if read_request(conn, pending) is None:
            return
        time.sleep(0.5)  # the client gives up on this one; the connection is not reused

    def quick(conn: socket.socket) -> None:
        answering(OK)(conn)

    hanging, answering_server = serve(first_hangs), serve(quick)

    async def main() -> int:
        async with LeanClient(transport(max_connections=1)) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await post(client, hanging.url + "/x")
            return (await post(client, answering_server.url + "/x", timeout=1.0)).status_code

    assert asyncio.run(main()) == 200


# --- the lean client answers as httpx's client does ----------------------------------------------------


def test_the_lean_client_answers_as_httpx_does(serve: Callable[[Handler], RawServer]) -> None:
    compressed = gzip.compress(b'{"zipped": true}')
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        pending = bytearray()
        while (request := read_request(conn, pending)) is not None:
            head = request[0]
            seen.append(head)
            if head.startswith(b"POST /redirect"):
                conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
            elif head.startswith(b"POST /zipped"):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
                             % len(compressed) + compressed)
            elif head.startswith(b"POST /cookie"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nset-cookie: affinity=abc; Path=/\r\ncontent-length: 2\r\n\r\n{}")
            else:
                conn.sendall(OK)

    server = serve(handler)

    async def main() -> None:
        async with LeanClient(transport(), headers={"x-api-key": "k", "accept": "application/json"},
                              params={"project": "p"}, timeout=httpx.Timeout(5.0)) as client:
            plain = await client.request("POST", server.url + "/plain", content=b"{}",
                                         headers={"Accept": "application/x-protobuf", "x-call": "1"})
            assert (plain.status_code, plain.content, plain.http_version, plain.reason_phrase) == (
                200, b"{}", "HTTP/1.1", "OK")
            assert plain.url == server.url + "/plain?project=p"
            assert plain.request.headers["accept"] == "application/x-protobuf"  # the call's replaces the client's
            assert plain.request.headers["x-api-key"] == "k"
            assert plain.request.content == b"{}"
            assert plain.elapsed.total_seconds() > 0
            assert plain.is_closed and plain.json() == {}

            moved = await client.request("POST", server.url + "/redirect", content=b"{}")
            assert moved.status_code == 307 and moved.next_request is not None  # not followed
            assert moved.next_request.url == server.url + "/elsewhere"  # as httpx builds it

            zipped = await client.request("POST", server.url + "/zipped", content=b"{}")
            assert zipped.json() == {"zipped": True}

            await client.request("POST", server.url + "/cookie", content=b"{}")
            await client.request("POST", server.url + "/plain", content=b"{}")

    asyncio.run(main())
    head = seen[0].decode().lower()
    assert head.startswith("post /plain?project=p http/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n" in head and "content-length: 2\r\n" in head
    assert head.count("accept: ") == 1 and "x-call: 1\r\n" in head
    assert "cookie: affinity=abc" in seen[-1].decode().lower()  # the jar's cookie goes back, as httpx sends it


def test_what_the_fast_path_does_not_do_goes_through_httpx(serve: Callable[[Handler], RawServer]) -> None:
    seen: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        pending = bytearray()
        while (request := read_request(conn, pending)) is not None:
            seen.append(request[0].lower())
            conn.sendall(b"HTTP/1.1 302 Found\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n"
                         if b"/moved" in request[0] else OK)

    server = serve(handler)
    hooked: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async def main() -> None:
        async with LeanClient(transport(), event_hooks={"request": [on_request]}) as client:
            await post(client, server.url + "/hooked")
        async with LeanClient(transport(), auth=("user", "secret")) as client:
            await post(client, server.url + "/auth")
        async with LeanClient(transport(), follow_redirects=True) as client:
            assert (await post(client, server.url + "/moved")).url == server.url + "/x"
        async with LeanClient(transport()) as client:
            await client.request("POST", server.url + "/params", content=b"{}", params={"a": "1"})

    asyncio.run(main())
    assert hooked == ["/hooked"]
    assert b"authorization: basic " in seen[1]
    assert seen[2].startswith(b"post /moved") and seen[3].startswith(b"get /x")  # followed, as httpx does a 302
    assert seen[4].startswith(b"post /params?a=1 ")


def test_the_pools_use_the_lean_client_and_a_proxy_environment_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    pools = ClientPools(Config(api_key="tml-k", base_url="http://127.0.0.1:9"), {})
    assert isinstance(pools.pick(Purpose.SAMPLING), LeanClient)

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    proxied = ClientPools(Config(api_key="tml-k", base_url="https://tinker.invalid"), {})
    client = proxied.pick(Purpose.SAMPLING)
    assert not isinstance(client, LeanClient)  # httpx's transports speak to the proxy
    assert any(mount is not None for mount in client._mounts.values())
    loopback = ClientPools(Config(api_key="tml-k", base_url="http://127.0.0.1:9"), {})
    assert isinstance(loopback.pick(Purpose.SAMPLING), LeanClient)  # loopback never goes through a proxy
