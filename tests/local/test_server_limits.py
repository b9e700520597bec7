"""The local service's HTTP server is safe to share: timeouts, size limits, early refusals, a
connection cap that does not starve real clients, safe binding, and no server paths in answers.

Every test talks to a real server on 127.0.0.1 through raw sockets (to misbehave on purpose) or
httpx, with small limits so that each runs in a second or two.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.local.support import SESSION_BODY
from tinker_actors.errors import InvalidInputError
from tinker_actors.local import FaultRule, LocalService
from tinker_actors.local.api.app import PathRedactor
from tinker_actors.local.config import UnsafeBindError, bind_refusal, is_loopback_host, remote_bind_warning
from tinker_actors.local.engine.backend import BaseModelDescription, ZeroWorkBackend
from tinker_actors.local.server.http_server import HttpLimits, HttpRequest, HttpResponse, HttpServer

KEY = "tml-limits-key"
SHORT = 0.5  # the header, body and idle timeouts of the `svc` fixture
SLACK = 3.0  # generous margin for a loaded machine; well below "never"


@pytest.fixture
def svc() -> Iterator[LocalService]:
    with LocalService(zero_work=True, api_key=KEY, long_poll_s=0.3, header_timeout_s=SHORT,
                      body_timeout_s=SHORT, idle_timeout_s=SHORT, max_body_bytes=4096,
                      max_header_bytes=4096) as service:
        yield service


def connect(service: LocalService, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=timeout)


def read_all(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """What the server sends until it closes (True) or `within` seconds pass (False)."""
    data = b""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_answer(sock: socket.socket, within: float = SLACK) -> bytes:
    """One whole answer (head and Content-Length body) from a connection kept open."""
    data = b""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        headers, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next((int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                return data
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def head(method: str, path: str, *, key: str | None = KEY, length: int | None = None,
         extra: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    if key is not None:
        lines.append(f"X-API-Key: {key}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# ---- timeouts ---------------------------------------------------------------------------------

def test_a_slowloris_client_is_cut_off_after_the_header_timeout(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer, closed = b"", False
        for i in range(50):  # a header line every 0.1 s: 5 s if nobody stops it
            try:
                raw.sendall(f"X-Trickle-{i}: y\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            answer, closed = read_all(raw, 0.1)
            if answer or closed:
                break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert SHORT * 0.8 <= elapsed < SHORT + SLACK


def test_a_connection_that_never_speaks_is_closed(svc: LocalService) -> None:
    with connect(svc) as raw:
        started = time.monotonic()
        answer, closed = read_all(raw, SHORT + SLACK)
    assert closed and answer == b""
    assert time.monotonic() - started < SHORT + SLACK


def test_a_body_that_stops_arriving_gets_408(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(head("POST", "/api/v1/create_session", length=100) + b'{"tags": []')
        started = time.monotonic()
        answer, closed = read_all(raw, SHORT + SLACK)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"body" in answer and closed
    assert time.monotonic() - started < SHORT + SLACK


def test_an_idle_keep_alive_connection_is_closed(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(head("GET", "/api/v1/healthz"))
        assert read_answer(raw).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        rest, closed = read_all(raw, SHORT + SLACK)
    assert closed and rest == b""  # closed quietly: no 408 for a client that asked nothing
    assert time.monotonic() - started < SHORT + SLACK


def test_a_long_poll_is_not_idleness() -> None:
    with LocalService(zero_work=True, api_key=KEY, long_poll_s=1.0, idle_timeout_s=0.2,
                      header_timeout_s=0.2) as service:
        service.faults.add(FaultRule(endpoint="create_model", action="never_complete"))
        with httpx.Client(base_url=service.base_url, headers={"X-API-Key": KEY}, timeout=10) as client:
            session_id = client.post("/api/v1/create_session", json=SESSION_BODY).json()["session_id"]
            future = client.post("/api/v1/create_model", json={
                "session_id": session_id, "model_seq_id": 0, "base_model": "tiny-byte"}).json()
        body = json.dumps({"request_id": future["request_id"]}).encode()
        with connect(service) as raw:
            raw.sendall(head("POST", "/api/v1/retrieve_future", length=len(body)) + body)
            started = time.monotonic()
            answer, closed = read_all(raw, 0.8)
            assert answer == b"" and not closed  # held for 1 s, not cut by the 0.2 s idle timeout
            answer = read_answer(raw)
            assert answer.startswith(b"HTTP/1.1 408") and b"try_again" in answer, answer
            assert time.monotonic() - started >= 0.9
            raw.sendall(head("GET", "/api/v1/healthz"))  # the same connection still serves
            again = read_answer(raw)
            assert again.startswith(b"HTTP/1.1 200"), again


# ---- sizes and early refusals -------------------------------------------------------------------

def test_an_oversized_body_gets_413_before_the_client_sends_it(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(head("POST", "/api/v1/create_session", length=10_000_000, extra="Expect: 100-continue\r\n"))
        started = time.monotonic()
        answer, closed = read_all(raw, SLACK)
    assert answer.startswith(b"HTTP/1.1 413"), answer  # no "100 Continue" first
    assert closed and time.monotonic() - started < SLACK  # and the connection ends at once


def test_an_oversized_chunked_body_is_cut_off_at_the_cap(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(head("POST", "/api/v1/create_session", extra="Transfer-Encoding: chunked\r\n"))
        raw.sendall(b"1000\r\n" + b"x" * 0x1000 + b"\r\n" + b"10\r\n" + b"y" * 16 + b"\r\n")  # 4096 + 16
        answer, closed = read_all(raw, SLACK)
    assert answer.startswith(b"HTTP/1.1 413") and closed, answer


@pytest.mark.parametrize(("key", "path", "status"), [
    (None, "/api/v1/create_session", 401),
    ("tml-wrong", "/api/v1/create_session", 401),
    ("tml-wrong", "/local/v1/faults", 401),
    (KEY, "/api/v1/nowhere", 404),
])
def test_a_refused_request_is_answered_before_its_body(svc: LocalService, key: str | None, path: str,
                                                       status: int) -> None:
    with connect(svc) as raw:
        raw.sendall(head("POST", path, key=key, length=1000, extra="Expect: 100-continue\r\n"))  # no body
        started = time.monotonic()
        answer, closed = read_all(raw, SLACK)
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer
    assert closed and time.monotonic() - started < SLACK
    with httpx.Client(base_url=svc.base_url, headers={"X-API-Key": KEY}) as client:  # the service lives on
        assert client.post("/api/v1/create_session", json=SESSION_BODY).status_code == 200


def test_httpx_reads_an_early_401_while_uploading(svc: LocalService) -> None:
    with httpx.Client(base_url=svc.base_url, headers={"X-API-Key": "tml-wrong"}, timeout=10) as client:
        response = client.post("/api/v1/create_session", content=b"{" + b" " * 3000 + b"}")
    assert response.status_code == 401


def test_oversized_headers_get_431(svc: LocalService) -> None:
    with connect(svc) as raw:
        raw.sendall(head("GET", "/api/v1/healthz", extra=f"X-Big: {'a' * 8000}\r\n"))
        answer, _ = read_all(raw, SLACK)
    assert answer.startswith(b"HTTP/1.1 431"), answer


def test_a_client_that_stops_reading_is_disconnected() -> None:
    async def big(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, b"x" * 32_000_000)

    async def scenario() -> tuple[int, int]:
        server = HttpServer(big, host="127.0.0.1", port=0, limits=HttpLimits(send_timeout_s=SHORT))
        await server.start()
        try:
            _unread, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=65536)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.2)
            stuck = server.open_connections  # the answer is being written to a client that reads nothing
            deadline = asyncio.get_running_loop().time() + SHORT + SLACK
            while server.open_connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            writer.close()
            return stuck, server.open_connections
        finally:
            await server.close()

    assert asyncio.run(scenario()) == (1, 0)


# ---- the connection cap ------------------------------------------------------------------------

def test_idle_sockets_do_not_starve_a_real_client() -> None:
    # Timeouts long enough that only the cap can free a place during the test.
    with LocalService(zero_work=True, api_key=KEY, max_connections=8, header_timeout_s=30,
                      idle_timeout_s=30) as service:
        hogs = [connect(service) for _ in range(12)]
        for hog in hogs[:6]:
            hog.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\n")  # a slowloris head
        time.sleep(0.6)  # connections younger than half a second are never reaped
        with httpx.Client(base_url=service.base_url, headers={"X-API-Key": KEY}, timeout=10) as client:
            for _ in range(3):
                assert client.post("/api/v1/create_session", json=SESSION_BODY).status_code == 200
        closed = sum(read_all(hog, 0.1)[1] for hog in hogs)
        for hog in hogs:
            hog.close()
    assert closed >= 12 + 1 - 8  # never more than 8 open: the longest-idle ones made room


def test_a_flood_of_new_connections_does_not_push_out_fresh_ones() -> None:
    with LocalService(zero_work=True, api_key=KEY, max_connections=3) as service:
        fresh = [connect(service) for _ in range(3)]
        with connect(service) as flood:
            answer, closed = read_all(flood, SLACK)
        assert answer.startswith(b"HTTP/1.1 503") and closed, answer
        for sock in fresh:  # each still gets its request served
            sock.sendall(head("GET", "/api/v1/healthz"))
            assert read_answer(sock).startswith(b"HTTP/1.1 200")
            sock.close()


def test_when_every_connection_is_busy_a_newcomer_gets_503() -> None:
    with LocalService(zero_work=True, api_key=KEY, max_connections=3) as service:
        service.faults.add(FaultRule(endpoint="healthz", action="never_complete"))  # holds each request
        held = [connect(service) for _ in range(3)]
        for sock in held:
            sock.sendall(head("GET", "/api/v1/healthz"))
        time.sleep(0.2)
        with httpx.Client(base_url=service.base_url, headers={"X-API-Key": KEY}, timeout=10) as client:
            response = client.post("/api/v1/create_session", json=SESSION_BODY)
        for sock in held:
            sock.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1" and response.json()["category"] == "server"


# ---- no server paths in answers -----------------------------------------------------------------

def test_an_exception_in_a_handler_is_a_500_without_paths(tmp_path: Path) -> None:
    async def leaky(request: HttpRequest) -> HttpResponse:
        raise OSError(f"cannot open {tmp_path}/runs/secret/arrays.npz")

    async def scenario() -> bytes:
        server = HttpServer(leaky, host="127.0.0.1", port=0, limits=HttpLimits())
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(4096), timeout=5)
            writer.close()
            return answer
        finally:
            await server.close()

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 500"), answer
    for leak in (str(tmp_path).encode(), b"/runs/", b"Traceback", b"OSError"):
        assert leak not in answer


class _LeakyBackend(ZeroWorkBackend):
    """A backend whose error text names a file of the server (as a careless engine error might)."""

    def __init__(self, where: Path) -> None:
        super().__init__()
        self.where = where

    def describe(self, base_model: str) -> BaseModelDescription:
        if base_model == "leaky":
            raise ValueError(f"no weights at {self.where}/models/leaky.npz (see {Path.home()}/notes.txt)")
        return super().describe(base_model)


def test_error_answers_do_not_reveal_server_paths(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LocalService(data_dir=data_dir, zero_work=True, api_key=KEY, backend=_LeakyBackend(data_dir)) as service, \
            httpx.Client(base_url=service.base_url, headers={"X-API-Key": KEY}) as client:
        session_id = client.post("/api/v1/create_session", json=SESSION_BODY).json()["session_id"]
        response = client.post("/api/v1/create_sampling_session", json={
            "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "leaky"})
    assert response.status_code == 400
    message = response.json()["error"]
    assert str(tmp_path) not in message and str(Path.home()) not in message
    assert "<data_dir>/models/leaky.npz" in message and "<server path>/notes.txt" in message


def test_the_redactor_leaves_other_paths_alone(tmp_path: Path) -> None:
    redactor = PathRedactor(tmp_path / "data")
    assert redactor.redact(f"at {tmp_path}/data/runs/x") == "at <data_dir>/runs/x"
    assert redactor.redact(f"at {tmp_path}/database") == f"at {tmp_path}/database"  # a longer name
    assert redactor.redact("no endpoint GET /api/v1/nowhere") == "no endpoint GET /api/v1/nowhere"
    assert redactor.redact("tinker://run/weights/a") == "tinker://run/weights/a"


# ---- binding and configuration ------------------------------------------------------------------

def test_which_addresses_count_as_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com"):
        assert not is_loopback_host(host), host


def test_a_remote_bind_without_a_fixed_key_is_refused_unless_allowed() -> None:
    assert bind_refusal("127.0.0.1", has_api_key=False, allow_remote=False) is None
    refusal = bind_refusal("0.0.0.0", has_api_key=False, allow_remote=False)
    assert refusal is not None and "--allow-remote" in refusal and "api key" in refusal.lower()
    assert bind_refusal("0.0.0.0", has_api_key=True, allow_remote=False) is None
    assert bind_refusal("0.0.0.0", has_api_key=False, allow_remote=True) is None
    assert remote_bind_warning("127.0.0.1", has_api_key=False) is None
    assert "ANY API key" in (remote_bind_warning("0.0.0.0", has_api_key=False) or "")
    assert "unencrypted" in (remote_bind_warning("0.0.0.0", has_api_key=True) or "")
    with pytest.raises(UnsafeBindError, match="non-loopback"):
        LocalService(host="0.0.0.0")  # refused at construction: nothing is created or bound
    assert issubclass(UnsafeBindError, InvalidInputError)


def test_bad_limits_are_refused_at_construction() -> None:
    for bad in ({"header_timeout_s": 0}, {"idle_timeout_s": -1.0}, {"max_connections": 0}):
        with pytest.raises(InvalidInputError):
            LocalService(zero_work=True, **bad)


def test_the_cli_refuses_a_remote_bind_and_warns_when_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from tinker_actors.cli import main

    class NotInTests(Exception):
        pass

    def never_start(self: LocalService) -> LocalService:
        raise NotInTests  # a test must never bind a non-loopback address

    monkeypatch.setattr(LocalService, "start", never_start)
    monkeypatch.delenv("TINKER_LOCAL_API_KEY", raising=False)
    monkeypatch.setattr("signal.signal", lambda *args: None)
    serve = ["local", "serve", "--port", "0", "--data-dir", str(tmp_path)]
    assert main([*serve, "--host", "0.0.0.0"]) == 2
    assert "refusing to serve on '0.0.0.0'" in capsys.readouterr().err
    assert main([*serve, "--header-timeout", "0"]) == 2
    assert "header_timeout_s must be a positive" in capsys.readouterr().err
    with pytest.raises(NotInTests):
        main([*serve, "--host", "0.0.0.0", "--allow-remote", "--max-connections", "64"])
    assert "WARNING" in capsys.readouterr().err
