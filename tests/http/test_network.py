"""The lean network backend under the HTTP layer's httpx clients, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from tinker_actors.config import Config
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.http.network import LeanBackend, install
from tinker_actors.http.pools import ClientPools

_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class OneAnswerPerConnection:
    """Answers one request per connection with keep-alive, then closes that connection from its side."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5.0)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(_ANSWER)
                time.sleep(0.05)  # let the client finish reading before we hang up

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() (on Linux): shutdown() does, at once
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def hanging_up_server() -> Iterator[OneAnswerPerConnection]:
    server = OneAnswerPerConnection()
    yield server
    server.close()


def test_the_pools_proxy_clients_run_on_the_lean_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a proxy the pools' clients run on the lean transport (tests/http/test_transport.py); with one,
    # on httpx's transports, whose connection pools get the lean backend.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    pools = ClientPools(Config(api_key="tml-k", base_url="https://tinker.invalid"), {})
    client = pools.pick(Purpose.SAMPLING)
    mounted = [transport for transport in client._mounts.values() if transport is not None]
    assert mounted
    assert all(isinstance(transport._pool._network_backend, LeanBackend)  # type: ignore[attr-defined]
               for transport in mounted)


def test_a_keepalive_connection_the_server_closed_is_not_reused(hanging_up_server: OneAnswerPerConnection) -> None:
    async def main() -> list[int]:
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        assert install(client, LeanBackend())
        statuses = []
        try:
            for _ in range(3):
                response = await client.post(f"http://127.0.0.1:{hanging_up_server.port}/x", content=b"{}")
                statuses.append(response.status_code)
                await asyncio.sleep(0.2)  # the server hangs up meanwhile; is_readable must notice
        finally:
            await client.aclose()
        return statuses

    assert asyncio.run(main()) == [200, 200, 200]
    assert hanging_up_server.connections == 3


def test_refused_connections_and_read_timeouts_keep_httpcores_error_types() -> None:
    async def main() -> None:
        backend = LeanBackend()
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("127.0.0.1", port, timeout=2.0)
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            stream = await backend.connect_tcp("127.0.0.1", listener.getsockname()[1], timeout=2.0)
            assert stream.get_extra_info("is_readable") is False  # connected, nothing sent yet
            started = time.monotonic()
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(10, timeout=0.1)
            assert time.monotonic() - started < 1.0
            await stream.aclose()
        finally:
            listener.close()

    asyncio.run(main())


def test_the_http_layer_talks_through_it(hanging_up_server: OneAnswerPerConnection) -> None:
    async def main() -> int:
        async with HttpLayer(Config(api_key="tml-k", base_url=f"http://127.0.0.1:{hanging_up_server.port}")) as layer:
            response = await layer.request(Purpose.SAMPLING, "POST", "/api/v1/asample", content=b"{}")
            return response.status_code

    assert asyncio.run(main()) == 200
