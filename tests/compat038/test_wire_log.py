"""The local service's wire log records what clients sent, decoded, only while a capture is open."""

from __future__ import annotations

import httpx

from tinker_actors import types
from tinker_actors.local import LocalService
from tinker_actors.wire import ForwardBackwardCall, client_codec


def test_records_json_protobuf_and_refused_requests_without_secrets() -> None:
    call = ForwardBackwardCall(
        model_id="not-a-model", seq_id=1, forward_only=True,
        input=types.ForwardBackwardInput(data=[types.Datum(
            model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [2, 3, 4]})],
            loss_fn="cross_entropy"))
    protobuf = client_codec("0.38").encode_forward_backward(call, compress=True)
    with LocalService(long_poll_s=1.0) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        key = {"X-API-Key": svc.api_key}
        http.post("/api/v1/create_session", json={"tags": [], "sdk_version": "0.6.3"}, headers=key)
        with svc.wire_log.capture() as capture:
            http.post("/api/v1/create_session", json={"tags": ["t"], "sdk_version": "0.38.0"},
                      headers={**key, "x-sdk-method": "ServiceClient.__init__", "Authorization": "Bearer x"})
            http.post("/api/v1/forward_backward", content=protobuf.body.content,
                      headers={**key, **protobuf.body.headers()})
            http.get("/api/v1/no_such_endpoint", headers=key)
        http.post("/api/v1/create_session", json={"tags": [], "sdk_version": "0.6.3"}, headers=key)

    records = capture.records
    assert [(r.method, r.path) for r in records] == [
        ("POST", "/api/v1/create_session"), ("POST", "/api/v1/forward_backward"),
        ("GET", "/api/v1/no_such_endpoint")]
    session, fwdbwd, unknown = records
    assert session.decoded() == {"tags": ["t"], "sdk_version": "0.38.0"} and session.status in (200, 400)
    assert session.headers["x-sdk-method"] == "ServiceClient.__init__"
    assert not {"x-api-key", "authorization"} & set(session.headers)
    assert svc.api_key not in repr(records)
    assert fwdbwd.content_type == "application/x-protobuf" and fwdbwd.headers["content-encoding"] == "zstd"
    decoded = fwdbwd.decoded()
    assert (decoded["model_id"], decoded["seq_id"], decoded["loss_fn"], decoded["forward_only"]) == \
        ("not-a-model", 1, "cross_entropy", True)
    assert len(decoded["data"]) == 1
    assert unknown.status == 404 and unknown.decoded() is None
