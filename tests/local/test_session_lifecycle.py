"""A session's life on the local service, over real HTTP: created with a project and a display name,
assigned to a project, finished by its client (the reason is recorded, first one wins, and survives a
restart), after which heartbeats answer 410 and the session takes no new models or samplers (410 too).
Listings filter by project. The official 0.38 SDK does all of it through its own calls."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.compat038.conftest import official_env, official_python
from tests.local.support import SESSION_BODY, Api
from tinker_actors.local import LocalService

_SEARCH = "/api/v1/sessions/search"


def _session(api: Api, **added: Any) -> str:
    response = api.post("/api/v1/create_session", {**SESSION_BODY, "sdk_version": "0.38.0", **added})
    assert response.status_code == 200, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def _heartbeat(api: Api, session_id: str) -> httpx.Response:
    return api.post("/api/v1/session_heartbeat", {"session_id": session_id, "type": "session_heartbeat"})


def _finish(api: Api, session_id: str, reason: str, detail: str | None = None) -> httpx.Response:
    return api.post(f"/api/v1/sessions/{session_id}/finish", {"reason": {"type": reason}, "detail": detail})


def _found(api: Api, session_id: str) -> dict[str, Any]:
    (found,) = api.post(_SEARCH, {"session_id": session_id}).json()["sessions"]
    assert isinstance(found, dict)
    return found


def test_a_session_keeps_its_project_display_name_and_metadata(api: Api) -> None:
    named = _session(api, project_id="vision", display_name="Nightly Eval run",
                     user_metadata={"team": "rl", "attempt": 3})
    plain = api.create_session()
    shown = api.http.get(f"/api/v1/sessions/{named}").json()
    assert shown == {"training_run_ids": [], "sampler_ids": [], "project_id": "vision",
                     "display_name": "Nightly Eval run", "user_metadata": {"team": "rl", "attempt": "3"}}
    found = _found(api, named)
    assert (found["project_id"], found["display_name"], found["user_metadata"]) == (
        "vision", "Nightly Eval run", {"team": "rl", "attempt": "3"})
    assert _found(api, plain)["project_id"] == "local"  # a session created without a project
    for query in ({"display_name": "eval NIGHTLY"}, {"user_metadata": {"team": "rl"}}, {"project_ids": ["vision"]}):
        assert [s["session_id"] for s in api.post(_SEARCH, query).json()["sessions"]] == [named], query
    for query in ({"display_name": "eval morning"}, {"user_metadata": {"team": "sl"}}, {"project_ids": ["audio"]}):
        assert api.post(_SEARCH, query).json()["sessions"] == [], query
    assert len(api.post(_SEARCH, {"session_id": plain, "display_name": "nightly"}).json()["sessions"]) == 2
    refused = api.post("/api/v1/create_session", {**SESSION_BODY, "project_id": ""})
    assert refused.status_code == 400 and "project_id" in refused.json()["error"]


def test_finish_records_the_first_reason_then_heartbeats_and_new_models_answer_410(tmp_path: Path) -> None:
    with LocalService(data_dir=tmp_path, zero_work=True, long_poll_s=0.3) as svc:
        api = Api(svc)
        session_id = _session(api, display_name="to finish")
        model_id = api.create_model(session_id)
        assert _heartbeat(api, session_id).status_code == 200
        assert _finish(api, session_id, "errored", "the loss went NaN").status_code == 200
        assert _finish(api, session_id, "success").status_code == 200  # a retry of the close; the first reason wins
        status = {"type": "client_finished", "reason": {"type": "errored"}, "detail": "the loss went NaN"}
        assert _found(api, session_id)["status"] == status
        gone = _heartbeat(api, session_id)
        assert gone.status_code == 410 and "finished" in gone.json()["error"]
        refused = api.post("/api/v1/create_model", {"session_id": session_id, "model_seq_id": 1,
                                                    "base_model": "tiny-byte"})
        assert refused.status_code == 410, refused.text
        assert "finished" in refused.json()["error"] and "new session" in refused.json()["error"]
        sampler = api.post("/api/v1/create_sampling_session", {
            "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte"})
        assert sampler.status_code == 410, sampler.text
        assert api.forward_backward(model_id, 1).status_code == 404  # the model was unloaded
        by_status = [{"type": "client_finished", "reasons": ["errored"]}]
        assert [s["session_id"] for s in api.post(_SEARCH, {"statuses": by_status}).json()["sessions"]] == [
            session_id]
        for other in ([{"type": "client_finished", "reasons": ["success"]}], [{"type": "active"}]):
            assert api.post(_SEARCH, {"statuses": other}).json()["sessions"] == [], other
        assert _finish(api, "no-such-session", "success").status_code == 404
        bad = api.post(f"/api/v1/sessions/{session_id}/finish", {"reason": {"type": "bored"}})
        assert bad.status_code == 400
        svc.restart()  # finished stays finished: no fresh timeout for it
        assert _heartbeat(api, session_id).status_code == 410
        assert _found(api, session_id)["status"] == status
        assert api.post("/api/v1/create_model", {"session_id": session_id, "model_seq_id": 2,
                                                 "base_model": "tiny-byte"}).status_code == 410
        api.close()


def test_a_session_is_assigned_to_a_project_and_listings_filter_by_it(api: Api) -> None:
    first, second = api.create_session(), api.create_session()
    first_run, second_run = api.create_model(first), api.create_model(second)
    saved = api.result(api.save_weights(second_run, 1, "kept").json()["request_id"])["path"]
    assigned = api.http.put(f"/api/v1/sessions/{second}/project", json={"project_id": "p-42"})
    assert assigned.status_code == 200, assigned.text
    assert api.http.get(f"/api/v1/sessions/{second}").json()["project_id"] == "p-42"
    assert _found(api, second)["project_id"] == "p-42"

    def runs(**params: str) -> list[str]:
        return [r["training_run_id"] for r in api.http.get("/api/v1/training_runs", params=params).json()[
            "training_runs"]]

    assert runs(project_id="p-42") == [second_run]
    assert runs(project_id="p-42", access_scope="accessible") == [second_run]
    assert runs(project_id="local") == [first_run]
    assert runs() == [first_run, second_run]
    checkpoints = api.http.get("/api/v1/checkpoints", params={"project_id": "p-42"}).json()["checkpoints"]
    assert [c["tinker_path"] for c in checkpoints] == [saved]
    assert api.http.get("/api/v1/checkpoints", params={"project_id": "local"}).json()["checkpoints"] == []
    assert api.http.get("/api/v1/sessions", params={"project_id": "p-42"}).json()["sessions"] == [second]
    # POST is taken too; a move to another project is allowed, a missing project_id is a 400.
    assert api.post(f"/api/v1/sessions/{second}/project", {"project_id": "p-43"}).status_code == 200
    assert runs(project_id="p-42") == [] and runs(project_id="p-43") == [second_run]
    assert api.http.put(f"/api/v1/sessions/{second}/project", json={}).status_code == 400
    assert api.http.put("/api/v1/sessions/nope/project", json={"project_id": "p"}).status_code == 404


_OFFICIAL_LIFECYCLE = """
import json, warnings
import tinker
warnings.simplefilter("ignore")
service = tinker.ServiceClient(project_id="proj-a", display_name="Official lifecycle")
training = service.create_lora_training_client(base_model="tiny-byte", rank=4).result(timeout=30)
rest = service.create_rest_client()
in_a = rest.list_training_runs(project_id="proj-a").result(timeout=30)
(session_id,) = rest.list_sessions(access_scope="accessible").result(timeout=30).sessions
info = rest.get_session(session_id).result(timeout=30)
rest.assign_session_project(session_id, "proj-b").result(timeout=30)
in_b = rest.list_training_runs(project_id="proj-b", access_scope="accessible").result(timeout=30)
still_a = rest.list_training_runs(project_id="proj-a").result(timeout=30)
service.close("interrupted", "stopped by the test").result(timeout=30)
print(json.dumps({"session_id": session_id, "display_name": info.display_name,
                  "in_a": [r.training_run_id for r in in_a.training_runs],
                  "in_b": [r.training_run_id for r in in_b.training_runs],
                  "still_a": [r.training_run_id for r in still_a.training_runs],
                  "model_id": training.model_id}))
"""


def test_the_official_038_sdk_sets_a_project_assigns_another_and_finishes_its_session(
        zero_service: LocalService, api: Api, tmp_path: Path) -> None:
    python = official_python()
    done = subprocess.run([str(python), "-c", _OFFICIAL_LIFECYCLE], env=official_env(zero_service, tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["display_name"] == "Official lifecycle"
    assert seen["in_a"] == [seen["model_id"]] and seen["in_b"] == [seen["model_id"]] and seen["still_a"] == []
    found = _found(api, seen["session_id"])
    assert (found["project_id"], found["display_name"]) == ("proj-b", "Official lifecycle")
    assert found["status"] == {"type": "client_finished", "reason": {"type": "interrupted"},
                               "detail": "stopped by the test"}
    assert _heartbeat(api, seen["session_id"]).status_code == 410
