"""Safety: loopback binding, API keys, names, oversized and malformed input never hurt the service."""

from __future__ import annotations

import socket

import httpx

from tests.local.support import SESSION_BODY, Api
from tinker_actors.local import LocalService


def test_binds_loopback_and_requires_an_api_key(zero_service: LocalService) -> None:
    assert zero_service.base_url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=zero_service.base_url) as bare:
        for method, path in (("POST", "/api/v1/create_session"), ("GET", "/api/v1/training_runs"),
                             ("GET", "/local/v1/faults"), ("GET", "/local/v1/requests")):
            response = bare.request(method, path, json=SESSION_BODY)
            assert response.status_code == 401, path
            assert "X-API-Key" in response.json()["error"]


def test_a_configured_key_is_required_and_never_shown() -> None:
    with LocalService(zero_work=True, api_key="tml-secret-123") as svc:
        assert "tml-secret-123" not in repr(svc)
        assert "tml-secret-123" not in repr(svc.config)
        wrong = Api(svc, api_key="tml-wrong")
        assert wrong.post("/api/v1/create_session", SESSION_BODY).status_code == 401
        assert wrong.admin("DELETE", "faults").status_code == 401
        right = Api(svc)
        assert svc.api_key == "tml-secret-123"
        assert right.post("/api/v1/create_session", SESSION_BODY).status_code == 200
        wrong.close()
        right.close()


def test_bad_checkpoint_names_are_refused(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    for seq_id, name in enumerate(["../escape", "a/b", "..", ".hidden", "with space", ""], start=1):
        response = api.save_weights(model_id, seq_id, name)
        assert response.status_code == 400, name
        assert "invalid checkpoint name" in response.json()["error"]
    for path in ["tinker://x/weights/../../etc", "file:///etc/passwd", "tinker://run/other/name"]:
        response = api.post("/api/v1/load_weights", {"model_id": model_id, "path": path, "optimizer": False,
                                                     "seq_id": 20})
        assert response.status_code == 400, path
    escaped = api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints/weights/..%2F..%2Fx/archive")
    assert escaped.status_code in (400, 404)


def test_oversized_bodies_get_413_and_the_service_lives_on() -> None:
    with LocalService(zero_work=True, max_body_bytes=4096) as svc:
        api = Api(svc)
        big = api.http.post("/api/v1/create_session", content=b"{" + b" " * 10_000 + b"}",
                            headers={"Content-Type": "application/json"})
        assert big.status_code == 413

        def chunks() -> bytes:
            return b"x" * 100_000

        chunked = api.http.post("/api/v1/create_session", content=iter([chunks(), chunks()]))
        assert chunked.status_code == 413
        assert api.post("/api/v1/create_session", SESSION_BODY).status_code == 200
        api.close()


def test_malformed_input_is_a_400_and_keeps_checkpoints(api: Api) -> None:
    session_id = api.create_session()
    model_id = api.create_model(session_id)
    saved = api.result(api.save_weights(model_id, 1, "precious").json()["request_id"])
    assert saved["path"].endswith("/weights/precious")
    for body in (b"{not json", b"[]", b'{"model_id": 5}', b"\xff\xfe", b"[" * 200_000):
        response = api.http.post("/api/v1/save_weights", content=body)
        assert response.status_code == 400, body
    unknown_field = api.post("/api/v1/forward_backward", {"model_id": model_id, "seq_id": 2, "oops": True,
                                                          "forward_backward_input": {}})
    assert unknown_field.status_code == 400
    assert "invalid forward_backward request" in unknown_field.json()["error"]
    assert api.http.get("/api/v1/nowhere").status_code == 404
    assert api.http.put("/api/v1/create_session").status_code == 405

    # Garbage on the socket: the connection is refused, the service is not.
    with socket.create_connection(("127.0.0.1", api.service.port), timeout=5) as raw:
        raw.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.1 400")
    checkpoints = api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints").json()["checkpoints"]
    assert [c["checkpoint_id"] for c in checkpoints] == ["weights/precious"]


def test_expect_100_continue_and_keep_alive_on_a_raw_socket(zero_service: LocalService) -> None:
    body = b'{"tags": [], "user_metadata": {}, "sdk_version": "raw"}'
    head = (f"POST /api/v1/create_session HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", zero_service.port), timeout=5) as raw:
        raw.sendall(head.encode())
        assert raw.recv(1024).startswith(b"HTTP/1.1 100")
        raw.sendall(body)
        first = raw.recv(4096)
        assert first.startswith(b"HTTP/1.1 200") and b"session_id" in first
        raw.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")  # same connection
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
