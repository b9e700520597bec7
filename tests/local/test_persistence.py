"""Checkpoints on disk: restart persistence, TTL expiry, publish, archive download, pagination."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import httpx

from tests.local.support import Api
from tinker_actors.local import LocalService


def test_restart_keeps_runs_checkpoints_and_port_but_forgets_futures(tmp_path: Path) -> None:
    with LocalService(zero_work=True, data_dir=tmp_path, long_poll_s=0.2) as svc:
        api = Api(svc)
        session_id = api.create_session()
        model_id = api.create_model(session_id)
        path = api.result(api.save_weights(model_id, 1, "kept").json()["request_id"])["path"]
        pending = api.optim_step(model_id, 5).json()["request_id"]  # waits for seq 2..4 (gap 5 s)
        port = svc.port
        svc.restart()
        assert svc.port == port and svc.restarts == 1
        assert api.poll(pending).status_code == 410  # the promise died with the process
        runs = api.http.get("/api/v1/training_runs").json()
        assert [r["training_run_id"] for r in runs["training_runs"]] == [model_id]
        assert runs["training_runs"][0]["last_checkpoint"]["tinker_path"] == path
        assert api.post("/api/v1/weights_info", {"tinker_path": path}).json() == {
            "base_model": "tiny-byte", "is_lora": True, "lora_rank": 4}
        gone = api.optim_step(model_id, 6)
        assert gone.status_code == 404 and "restarted" in gone.json()["error"]
        # A new model in the same (remembered) session can load the checkpoint.
        new_model = api.create_model(session_id, model_seq_id=1)
        loaded = api.post("/api/v1/load_weights", {"model_id": new_model, "path": path, "optimizer": True,
                                                   "seq_id": 1}).json()
        assert api.result(loaded["request_id"]) == {"path": path}
        api.close()
    # A brand-new service on the same directory knows it all too.
    with LocalService(zero_work=True, data_dir=tmp_path) as again:
        api = Api(again)
        ids = [c["tinker_path"] for c in api.http.get("/api/v1/checkpoints").json()["checkpoints"]]
        assert ids == [path]
        assert session_id in api.http.get("/api/v1/sessions").json()["sessions"]
        api.close()


def test_checkpoint_ttl_expiry_publish_and_archive(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    for seq_id, name in enumerate(["a", "b"], start=1):
        api.result(api.save_weights(model_id, seq_id, name).json()["request_id"])
    base = f"/api/v1/training_runs/{model_id}/checkpoints/weights"

    ttl = api.http.put(f"{base}/a/ttl", json={"ttl_seconds": 1})
    assert ttl.status_code == 200 and ttl.json()["expires_at"]
    forever = api.http.post(f"{base}/b/ttl", json={"ttl_seconds": None})
    assert forever.status_code == 200 and "expires_at" not in forever.json()
    assert api.http.put(f"{base}/b/ttl", json={"ttl_seconds": -1}).status_code == 400

    assert api.http.post(f"{base}/b/publish").status_code == 204
    again = api.http.post(f"{base}/b/publish")
    assert again.status_code == 400 and "already public" in again.json()["error"]
    assert api.http.delete(f"{base}/b/publish").status_code == 204
    assert api.http.delete(f"{base}/b/publish").status_code == 400

    archive = api.http.get(f"{base}/b/archive")
    assert archive.status_code == 302
    assert archive.headers["expires"].endswith("GMT")
    download = httpx.get(archive.headers["location"])  # no API key: the URL is the secret
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        assert sorted(tar.getnames()) == ["adapter_config.json", "adapter_model.safetensors", "arrays.npz",
                                          "checkpoint.json"]
    assert httpx.get(archive.headers["location"].replace(".tar", "x.tar")).status_code == 404

    time.sleep(1.1)
    names = [c["checkpoint_id"] for c in api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints").json()[
        "checkpoints"]]
    assert names == ["weights/b"]  # "a" expired and disappeared
    assert api.http.delete(f"{base}/a").status_code == 404
    assert api.http.delete(f"{base}/b").status_code == 204
    assert api.http.get(f"{base}/b/archive").status_code == 404


def test_training_runs_are_paginated_with_a_cursor(api: Api) -> None:
    session_id = api.create_session()
    models = [api.create_model(session_id, model_seq_id=n) for n in range(5)]
    page = api.http.get("/api/v1/training_runs", params={"limit": 2, "offset": 2}).json()
    assert page["cursor"] == {"offset": 2, "limit": 2, "total_count": 5}
    assert [r["training_run_id"] for r in page["training_runs"]] == models[2:4]
    assert api.http.get("/api/v1/training_runs", params={"limit": "x"}).status_code == 400
    session = api.http.get(f"/api/v1/sessions/{session_id}").json()
    assert session == {"training_run_ids": models, "sampler_ids": []}
    assert api.http.get("/api/v1/training_runs/nope").status_code == 404


def test_ephemeral_and_named_sampler_weights(api: Api) -> None:
    session_id = api.create_session()
    model_id = api.create_model(session_id)
    named = api.post("/api/v1/save_weights_for_sampler", {"model_id": model_id, "path": "s1", "seq_id": 1}).json()
    assert api.result(named["request_id"]) == {"path": f"tinker://{model_id}/sampler_weights/s1"}
    ephemeral = api.post("/api/v1/save_weights_for_sampler",
                         {"model_id": model_id, "seq_id": 2, "sampling_session_seq_id": 3}).json()
    result = api.result(ephemeral["request_id"])
    assert result == {"sampling_session_id": f"{session_id}:sample:3"}  # and no path
    sampler = api.http.get(f"/api/v1/samplers/{session_id}:sample:3").json()
    assert sampler == {"sampler_id": f"{session_id}:sample:3", "base_model": "tiny-byte"}
    neither = api.post("/api/v1/save_weights_for_sampler", {"model_id": model_id, "seq_id": 4})
    assert neither.status_code == 400
    missing = api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": 9, "base_model": None,
        "model_path": f"tinker://{model_id}/sampler_weights/nope"})
    assert missing.status_code == 404
