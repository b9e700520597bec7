"""Tenants in the local service: each API key is a user whose runs, checkpoints, sessions, samplers, futures
and archives no other user can see or touch (real HTTP on 127.0.0.1). Another user's id answers exactly as
an unknown id (404, or 410 for a future), so ids do not leak; published checkpoints are readable and
sampleable by everyone and changeable only by their owner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.local.support import Api
from tinker_actors.local import LocalService

KEYS = {"alice": "tml-alice-key-0001", "bob": "tml-bob-key-0002"}
_SAMPLE = {"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2]}]}, "sampling_params": {"max_tokens": 2},
           "prompt_logprobs": False, "topk_prompt_logprobs": 0}


@dataclass
class AliceWorld:
    """What alice made: a session, a model with a training and a sampler checkpoint, a sampler, futures."""

    session_id: str
    run_id: str
    weights: str  # tinker path of the training checkpoint
    sampler_weights: str
    sampler_id: str
    sample_request: str
    save_request: str


def _service(data_dir: Path) -> LocalService:
    return LocalService(data_dir=data_dir, api_keys=KEYS, zero_work=True, long_poll_s=0.3, gap_timeout_s=0.5)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LocalService]:
    with _service(tmp_path / "data") as service:
        yield service


@pytest.fixture
def alice(svc: LocalService) -> Iterator[Api]:
    client = Api(svc, KEYS["alice"])
    yield client
    client.close()


@pytest.fixture
def bob(svc: LocalService) -> Iterator[Api]:
    client = Api(svc, KEYS["bob"])
    yield client
    client.close()


def _sampler(api: Api, session_id: str, seq: int, model_path: str | None) -> httpx.Response:
    return api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": seq,
        "base_model": None if model_path else "tiny-byte", "model_path": model_path})


def _sample(api: Api, sampler_id: str, seq_id: int) -> httpx.Response:
    return api.post("/api/v1/asample", {**_SAMPLE, "sampling_session_id": sampler_id, "seq_id": seq_id})


def _make_world(api: Api) -> AliceWorld:
    session_id = api.create_session()
    run_id = api.create_model(session_id)
    save = api.save_weights(run_id, 1, "ckpt").json()["request_id"]
    weights = api.result(save)["path"]
    sampler_weights = api.result(api.post("/api/v1/save_weights_for_sampler", {
        "model_id": run_id, "path": "for-sampling", "seq_id": 2}).json()["request_id"])["path"]
    sampler = _sampler(api, session_id, 0, weights)
    assert sampler.status_code == 200, sampler.text
    sampler_id = sampler.json()["sampling_session_id"]
    sample = _sample(api, sampler_id, 0)
    assert sample.status_code == 200, sample.text
    api.result(sample.json()["request_id"])
    return AliceWorld(session_id, run_id, weights, sampler_weights, sampler_id, sample.json()["request_id"], save)


def _ckpt_url(tinker_path: str, suffix: str = "") -> str:
    run_id, rest = tinker_path.removeprefix("tinker://").split("/", 1)
    return f"/api/v1/training_runs/{run_id}/checkpoints/{rest}{suffix}"


def _same_as_unknown(api: Api, method: str, path: str, body: Any, real_id: str) -> int:
    """Send the request for ``real_id`` (another user's) and for an id nobody has; the answers must be the same
    but for the id itself. Returns the status."""
    fake_id = "f" * 8 + real_id[8:] if not real_id.startswith("f") else "e" * 8 + real_id[8:]

    def send(identifier: str) -> httpx.Response:
        text = json.dumps(body).replace(real_id, identifier) if body is not None else None
        return api.http.request(method, path.replace(real_id, identifier), content=text,
                                headers={"Content-Type": "application/json"} if text else {})

    foreign, unknown = send(real_id), send(fake_id)
    assert foreign.status_code == unknown.status_code, (path, foreign.text, unknown.text)
    assert foreign.text == unknown.text.replace(fake_id, real_id), (path, foreign.text, unknown.text)
    assert foreign.status_code in (404, 410), (path, foreign.status_code, foreign.text)
    return foreign.status_code


def test_two_keys_cannot_see_or_touch_each_others_records(alice: Api, bob: Api) -> None:
    world = _make_world(alice)
    # Listings show only one's own records.
    assert bob.http.get("/api/v1/training_runs").json()["training_runs"] == []
    assert bob.http.get("/api/v1/checkpoints").json()["checkpoints"] == []
    assert world.session_id not in bob.http.get("/api/v1/sessions").json()["sessions"]
    assert bob.post("/api/v1/sessions/search", {}).json()["sessions"] == []
    assert bob.post("/api/v1/sessions/search", {"owner": {"type": "accessible"}}).json()["sessions"] == []
    # Every lookup of alice's ids answers bob exactly as an unknown id would.
    sid, run, sampler = world.session_id, world.run_id, world.sampler_id
    checks: list[tuple[str, str, Any, str]] = [
        ("GET", f"/api/v1/training_runs/{run}", None, run),
        ("GET", f"/api/v1/training_runs/{run}?access_scope=accessible", None, run),
        ("GET", f"/api/v1/training_runs/{run}/checkpoints", None, run),
        ("DELETE", _ckpt_url(world.weights), None, run),
        ("POST", _ckpt_url(world.weights, "/publish"), None, run),
        ("PUT", _ckpt_url(world.weights, "/ttl"), {"ttl_seconds": 60}, run),
        ("GET", _ckpt_url(world.weights, "/archive"), None, run),
        ("GET", f"/api/v1/sessions/{sid}", None, sid),
        ("PUT", f"/api/v1/sessions/{sid}/project", {"project_id": "p"}, sid),
        ("POST", f"/api/v1/sessions/{sid}/finish", {"reason": {"type": "success"}}, sid),
        ("POST", "/api/v1/session_heartbeat", {"session_id": sid, "type": "session_heartbeat"}, sid),
        ("POST", "/api/v1/create_model", {"session_id": sid, "model_seq_id": 9, "base_model": "tiny-byte"}, sid),
        ("POST", "/api/v1/create_sampling_session",
         {"session_id": sid, "sampling_session_seq_id": 9, "base_model": "tiny-byte"}, sid),
        ("GET", f"/api/v1/samplers/{sampler}", None, sampler),
        ("POST", "/api/v1/asample", {**_SAMPLE, "sampling_session_id": sampler, "seq_id": 5}, sampler),
        ("POST", "/api/v1/get_info", {"model_id": run}, run),
        ("POST", "/api/v1/forward_backward", {"forward_backward_input": {
            "data": [], "loss_fn": "cross_entropy", "loss_fn_config": None}, "model_id": run, "seq_id": 3}, run),
        ("POST", "/api/v1/save_weights", {"model_id": run, "path": "stolen", "seq_id": 3}, run),
        ("POST", "/api/v1/unload_model", {"model_id": run}, run),
        ("POST", "/api/v1/weights_info", {"tinker_path": world.weights}, run),
        ("POST", "/api/v1/retrieve_future", {"request_id": world.sample_request}, world.sample_request),
        ("POST", "/api/v1/retrieve_future", {"request_id": world.save_request}, world.save_request),
    ]
    for method, path, body, real_id in checks:
        _same_as_unknown(bob, method, path, body, real_id)
    # Nor can bob sample, load or build on alice's private checkpoint from his own session.
    bob_session = bob.create_session()
    _same_as_unknown(bob, "POST", "/api/v1/create_sampling_session",
                     {"session_id": bob_session, "sampling_session_seq_id": 0, "model_path": world.weights}, run)
    _same_as_unknown(bob, "POST", "/api/v1/load_weights", {"session_id": bob_session, "model_seq_id": 0,
                                                          "path": world.weights, "optimizer": False}, run)
    bob_model = bob.create_model(bob_session, model_seq_id=1)
    loaded = bob.post("/api/v1/load_weights", {"model_id": bob_model, "path": world.weights, "seq_id": 1,
                                               "optimizer": False})
    failure = bob.result(loaded.json()["request_id"])
    assert failure["error"] == f"checkpoint {world.weights} not found"
    # ...and alice still has everything, untouched.
    assert alice.http.get(f"/api/v1/training_runs/{run}").status_code == 200
    names = {c["tinker_path"] for c in alice.http.get(f"/api/v1/training_runs/{run}/checkpoints").json()["checkpoints"]}
    assert names == {world.weights, world.sampler_weights}
    assert alice.post("/api/v1/session_heartbeat", {"session_id": sid, "type": "session_heartbeat"}).status_code == 200
    assert alice.poll(world.sample_request).status_code == 200
    assert alice.http.get(f"/api/v1/samplers/{sampler}").status_code == 200
    assert _sample(alice, sampler, 1).status_code == 200
    assert [r["training_run_id"] for r in alice.http.get("/api/v1/training_runs").json()["training_runs"]] == [run]
    assert [r["model_owner"] for r in alice.http.get("/api/v1/training_runs").json()["training_runs"]] == ["alice"]


def test_a_published_checkpoint_is_readable_and_sampleable_by_others_but_only_its_owner_changes_it(
        alice: Api, bob: Api) -> None:
    world = _make_world(alice)
    assert alice.post(_ckpt_url(world.weights, "/publish"), None).status_code == 204
    run = world.run_id
    # Listed for bob with access_scope=accessible only; its run's other (private) checkpoint stays hidden.
    assert bob.http.get("/api/v1/training_runs").json()["training_runs"] == []
    (shared,) = bob.http.get("/api/v1/training_runs", params={"access_scope": "accessible"}).json()["training_runs"]
    assert shared["training_run_id"] == run and shared["model_owner"] == "alice"
    assert shared["last_checkpoint"]["tinker_path"] == world.weights and shared["last_sampler_checkpoint"] is None
    assert bob.http.get(f"/api/v1/training_runs/{run}").status_code == 404  # owned, the default scope
    assert bob.http.get(f"/api/v1/training_runs/{run}", params={"access_scope": "accessible"}).status_code == 200
    listed = bob.http.get(f"/api/v1/training_runs/{run}/checkpoints").json()["checkpoints"]
    assert [c["tinker_path"] for c in listed] == [world.weights] and listed[0]["public"] is True
    assert bob.http.get("/api/v1/checkpoints").json()["checkpoints"] == []
    accessible = bob.http.get("/api/v1/checkpoints", params={"access_scope": "accessible"}).json()["checkpoints"]
    assert [c["tinker_path"] for c in accessible] == [world.weights]
    assert bob.post("/api/v1/weights_info", {"tinker_path": world.weights}).status_code == 200
    # Its archive downloads (the redirect's URL is the secret, no key needed).
    archive = bob.http.get(_ckpt_url(world.weights, "/archive"))
    assert archive.status_code == 302
    assert httpx.get(archive.headers["location"], timeout=10).status_code == 200
    # Bob samples from it in his own session, and loads it into a model of his.
    bob_session = bob.create_session()
    sampler = _sampler(bob, bob_session, 0, world.weights)
    assert sampler.status_code == 200, sampler.text
    sample = _sample(bob, sampler.json()["sampling_session_id"], 0)
    assert "sequences" in bob.result(sample.json()["request_id"])
    created = bob.post("/api/v1/load_weights", {"session_id": bob_session, "model_seq_id": 0,
                                                "path": world.weights, "optimizer": False})
    assert bob.result(created.json()["request_id"])["model_id"] == f"{bob_session}:train:0"
    # Changing it is alice's alone: to bob it answers as an unknown checkpoint.
    for method, suffix, body in (("DELETE", "", None), ("DELETE", "/publish", None),
                                 ("PUT", "/ttl", {"ttl_seconds": 1})):
        assert _same_as_unknown(bob, method, _ckpt_url(world.weights, suffix), body, run) == 404
    still = alice.http.get(f"/api/v1/training_runs/{run}/checkpoints").json()["checkpoints"]
    public = [c for c in still if c["tinker_path"] == world.weights]
    assert public and public[0]["public"] is True and public[0].get("expires_at") is None
    # Once alice unpublishes it, it is hers alone again.
    assert alice.http.delete(_ckpt_url(world.weights, "/publish")).status_code == 204
    assert bob.http.get(f"/api/v1/training_runs/{run}/checkpoints").status_code == 404
    assert bob.post("/api/v1/weights_info", {"tinker_path": world.weights}).status_code == 404


def test_tenants_stay_apart_after_a_restart_on_the_same_data_dir(svc: LocalService, alice: Api, bob: Api) -> None:
    world = _make_world(alice)
    bob_session = bob.create_session()
    svc.restart()
    assert [r["training_run_id"] for r in alice.http.get("/api/v1/training_runs").json()["training_runs"]] == [
        world.run_id]
    assert bob.http.get("/api/v1/training_runs").json()["training_runs"] == []
    assert bob.http.get(f"/api/v1/training_runs/{world.run_id}").status_code == 404
    assert bob.http.get(_ckpt_url(world.weights, "/archive")).status_code == 404
    assert bob.http.delete(_ckpt_url(world.weights)).status_code == 404
    assert bob.http.get(f"/api/v1/samplers/{world.sampler_id}").status_code == 404
    assert _sample(bob, world.sampler_id, 7).status_code == 404
    assert _sample(alice, world.sampler_id, 7).status_code == 200  # rebuilt from disk, still hers
    assert bob.http.get("/api/v1/sessions").json()["sessions"] == [bob_session]
    assert alice.http.get("/api/v1/sessions").json()["sessions"] == [world.session_id]
    assert bob.http.get(f"/api/v1/sessions/{world.session_id}").status_code == 404
    assert alice.http.get(_ckpt_url(world.weights, "/archive")).status_code == 302


def test_records_of_an_older_version_without_owners_belong_to_the_default_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LocalService(data_dir=data, zero_work=True, long_poll_s=0.3) as single:
        api = Api(single)
        session_id = api.create_session()
        run_id = api.create_model(session_id)
        path = api.result(api.save_weights(run_id, 1, "old").json()["request_id"])["path"]
        api.close()
    # Rewrite the files as an older version wrote them: no owners; sessions as {id: creation time}.
    (run_file,) = data.glob("runs/*/run.json")
    run = json.loads(run_file.read_text())
    del run["owner"]
    run["model_owner"] = "local"
    run_file.write_text(json.dumps(run))
    sessions_file = data / "sessions.json"
    sessions = json.loads(sessions_file.read_text())
    sessions_file.write_text(json.dumps({sid: entry["created"] for sid, entry in sessions.items()}))
    with LocalService(data_dir=data, zero_work=True, long_poll_s=0.3,
                      api_keys={"default": "tml-first-key-01", "bob": "tml-second-key-02"}) as multi:
        default, bob = Api(multi, "tml-first-key-01"), Api(multi, "tml-second-key-02")
        assert [r["training_run_id"] for r in default.http.get("/api/v1/training_runs").json()["training_runs"]] == [
            run_id]
        assert default.http.get("/api/v1/sessions").json()["sessions"] == [session_id]
        assert default.http.get(_ckpt_url(path, "/archive")).status_code == 302
        assert bob.http.get("/api/v1/training_runs").json()["training_runs"] == []
        assert bob.http.get("/api/v1/sessions").json()["sessions"] == []
        assert bob.http.get(f"/api/v1/sessions/{session_id}").status_code == 404
        default.close()
        bob.close()


def test_without_configured_keys_every_key_is_the_one_default_user(api: Api) -> None:
    session_id = api.create_session()
    run_id = api.create_model(session_id)
    other = Api(api.service, "tml-some-other-key")
    try:
        assert [r["training_run_id"] for r in other.http.get("/api/v1/training_runs").json()["training_runs"]] == [
            run_id]
        assert other.http.get(f"/api/v1/sessions/{session_id}").status_code == 200
        assert other.forward_backward(run_id, 1).status_code == 200
    finally:
        other.close()


def test_an_unknown_access_scope_is_a_400(alice: Api) -> None:
    for path in ("/api/v1/training_runs", "/api/v1/checkpoints", "/api/v1/sessions"):
        refused = alice.http.get(path, params={"access_scope": "everything"})
        assert refused.status_code == 400 and "access_scope" in refused.json()["error"], path
