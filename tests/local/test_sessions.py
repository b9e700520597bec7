"""Sessions, heartbeats and expiry (WIRE-PROTOCOL §2.4), telemetry storage (§2.6)."""

from __future__ import annotations

import time

from tests.local.support import Api
from tinker_actors.local import LocalService


def test_silent_sessions_expire_and_their_models_are_unloaded() -> None:
    with LocalService(zero_work=True, session_timeout_s=0.4, long_poll_s=0.2) as svc:
        api = Api(svc)
        silent = api.create_session()
        alive = api.create_session()
        silent_model = api.create_model(silent)
        alive_model = api.create_model(alive, model_seq_id=0)
        for _ in range(6):  # keep one session alive for ~0.9 s
            assert api.post("/api/v1/session_heartbeat", {"session_id": alive}).status_code == 200
            time.sleep(0.15)
        expired = api.post("/api/v1/session_heartbeat", {"session_id": silent})
        assert expired.status_code == 404
        assert "expired" in expired.json()["error"]
        refused = api.forward_backward(silent_model, 1)
        assert refused.status_code == 404
        assert "expired" in refused.json()["error"]
        assert api.forward_backward(alive_model, 1).status_code == 200
        # Expired sessions are still listed (history), but cannot create models.
        assert silent in api.http.get("/api/v1/sessions", params={"limit": 100}).json()["sessions"]
        assert api.post("/api/v1/create_model", {
            "session_id": silent, "model_seq_id": 5, "base_model": "tiny-byte", "user_metadata": None,
            "lora_config": {"rank": 2}}).status_code == 404
        api.close()


def test_heartbeat_of_unknown_session_is_404(api: Api) -> None:
    response = api.post("/api/v1/session_heartbeat", {"session_id": "nope"})
    assert response.status_code == 404


def test_telemetry_is_stored_and_answered_exactly_accepted(api: Api, zero_service: LocalService) -> None:
    batch = {"events": [{"event": "SESSION_START", "event_id": "e1", "event_session_index": 0,
                         "severity": "INFO", "timestamp": "2026-01-01T00:00:00Z"}],
             "platform": "Linux", "sdk_version": "0.6.3", "session_id": "s1"}
    response = api.post("/api/v1/telemetry", batch)
    assert response.status_code == 200
    assert response.content == b'{"status":"accepted"}'
    assert api.http.post("/api/v1/telemetry", content=b"not json").json() == {"status": "accepted"}
    stored = api.admin("GET", "telemetry").json()
    assert stored["batches"] == 1  # the non-JSON one was answered but not kept
    assert stored["events"][0]["event"] == "SESSION_START"
    assert stored["events"][0]["batch"]["session_id"] == "s1"
    assert zero_service.telemetry_events()[0]["event_id"] == "e1"


def test_health_and_capabilities(api: Api) -> None:
    assert api.http.get("/api/v1/healthz").json() == {"status": "ok"}
    health = api.admin("GET", "health").json()
    assert health["status"] == "ok" and health["zero_work"] is True
    models = api.http.get("/api/v1/get_server_capabilities").json()["supported_models"]
    assert {"model_name": "tiny-byte", "max_context_length": 512, "trainable": True, "sampleable": True} in models
