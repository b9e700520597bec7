"""The local service's engine is safe to share: no data loss, bounded work, strict ordering, archives, ids."""

from __future__ import annotations

import io
import itertools
import stat
import tarfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.local.support import Api, RecordingBackend, datum
from tinker_actors.local import LocalService
from tinker_actors.local.engine import storage as storage_module
from tinker_actors.local.engine.archives import ArchiveCache, estimated_tar_size
from tinker_actors.local.engine.stats import TelemetryLog
from tinker_actors.local.engine.storage import RunRecord, Storage
from tinker_actors.local.engine.work_limits import WorkLimits

RUN = "session:train:0"


def _storage(root: Path) -> Storage:
    storage = Storage(root)
    storage.load()
    if storage.run(RUN) is None:
        now = datetime.now(UTC)
        storage.add_run(RunRecord(run_id=RUN, session_id="session", base_model="tiny-byte", lora_rank=4, seed=None,
                                  train_mlp=True, train_attn=True, train_unembed=True, model_owner="local",
                                  created=now, last_request_time=now))
    return storage


def test_expiry_during_a_resave_only_removes_the_expired_version(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The old version's TTL runs out while the same name is saved again: the new save must survive."""
    storage = _storage(tmp_path)
    old = storage.write_checkpoint(RUN, "weights", "ckpt", {"w": np.zeros(3)}, with_optimizer=True)
    storage.set_ttl(old, 3600)
    real_write = storage_module.write_arrays_atomic

    def write_then_expire(path: Path, arrays: storage_module.Arrays) -> int:
        size = real_write(path, arrays)
        # The expiry sweep runs right between the save's steps (arrays written, not yet committed).
        current = storage.checkpoint(RUN, "weights/ckpt")
        assert current is not None
        storage.update_checkpoint(replace(current, expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        storage.expire()
        return size

    monkeypatch.setattr(storage_module, "write_arrays_atomic", write_then_expire)
    new = storage.write_checkpoint(RUN, "weights", "ckpt", {"w": np.ones(3)}, with_optimizer=True)
    monkeypatch.undo()

    assert storage.checkpoint(RUN, "weights/ckpt") == new
    np.testing.assert_array_equal(storage.read_checkpoint(new)["w"], np.ones(3))
    again = _storage(tmp_path)  # a restart sees the new checkpoint too
    reloaded = again.checkpoint(RUN, "weights/ckpt")
    assert reloaded is not None and reloaded.expires_at is None
    np.testing.assert_array_equal(again.read_checkpoint(reloaded)["w"], np.ones(3))


def _version_dirs(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.glob(f"runs/*/weights/{name}/*") if p.is_dir())


def test_a_resave_replaces_the_version_and_concurrent_expiry_never_loses_it(tmp_path: Path) -> None:
    """25 rounds of: save a name whose previous version expires right now, with the sweep racing it."""
    storage = _storage(tmp_path)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.is_set():
            storage.expire()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        for trial in range(25):
            record = storage.write_checkpoint(RUN, "weights", "hot", {"w": np.full(3, trial)}, with_optimizer=True)
            assert storage.set_ttl(record, 0) is not None or storage.checkpoint(RUN, "weights/hot") is None
            fresh = storage.write_checkpoint(RUN, "weights", "hot", {"w": np.full(3, 100 + trial)},
                                             with_optimizer=True)
            assert storage.checkpoint(RUN, "weights/hot") == fresh
            np.testing.assert_array_equal(storage.read_checkpoint(fresh)["w"], np.full(3, 100 + trial))
            storage.delete_checkpoint(fresh)
    finally:
        stop.set()
        sweeper.join()
    assert _version_dirs(tmp_path, "hot") == []  # nothing left behind


def test_leftovers_of_a_killed_save_are_removed_at_start(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    kept = storage.write_checkpoint(RUN, "weights", "kept", {"w": np.arange(4)}, with_optimizer=True)
    (current,) = _version_dirs(tmp_path, "kept")
    leftovers = [current / ".tmp-abc123.npz", tmp_path / ".tmp-sessions.json",
                 current.parent.parent / ".tmp-zzz.json"]
    for path in leftovers:
        path.write_bytes(b"half-written")
    incomplete = current.parent / "v00000000000000000001-deadbeef"  # arrays written, metadata never
    incomplete.mkdir()
    (incomplete / "arrays.npz").write_bytes(b"partial")
    with LocalService(zero_work=True, data_dir=tmp_path) as svc:
        api = Api(svc)
        listed = api.http.get(f"/api/v1/training_runs/{RUN}/checkpoints").json()["checkpoints"]
        assert [c["tinker_path"] for c in listed] == [kept.tinker_path]
        api.close()
    assert not any(path.exists() for path in leftovers)
    assert not incomplete.exists()
    assert _version_dirs(tmp_path, "kept") == [current]
    np.testing.assert_array_equal(_storage(tmp_path).read_checkpoint(kept)["w"], np.arange(4))


def test_a_data_dir_of_the_earlier_layout_is_read_and_can_be_resaved(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    record = storage.write_checkpoint(RUN, "weights", "old", {"w": np.arange(2)}, with_optimizer=False)
    (version,) = _version_dirs(tmp_path, "old")
    for name in ("arrays.npz", "checkpoint.json"):  # files directly in <name>/, as before versions
        (version / name).rename(version.parent / name)
    version.rmdir()
    legacy = _storage(tmp_path)
    found = legacy.checkpoint(RUN, "weights/old")
    assert found is not None and found.version == "" and found.time == record.time
    np.testing.assert_array_equal(legacy.read_checkpoint(found)["w"], np.arange(2))
    legacy.write_checkpoint(RUN, "weights", "old", {"w": np.arange(5)}, with_optimizer=False)
    assert sorted(p.name for p in (version.parent).iterdir()) == [_version_dirs(tmp_path, "old")[0].name]


# ---- bounded work ------------------------------------------------------------------------------------

def _sampler(api: Api) -> str:
    session_id = api.create_session()
    response = api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte", "model_path": None})
    sampler_id: str = response.json()["sampling_session_id"]
    return sampler_id


def _sample_body(sampler_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2, 3]}]}, "sampling_params": {"max_tokens": 2},
        "sampling_session_id": sampler_id, "seq_id": 0, "prompt_logprobs": False, "topk_prompt_logprobs": 0}
    body.update(changes)
    return body


def _assert_user_400(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["category"] == "user"
    for word in words:
        assert word in body["error"], body["error"]


def test_sampling_requests_beyond_the_limits_are_400_user_errors(api: Api) -> None:
    sampler_id = _sampler(api)
    too_many = api.post("/api/v1/asample", _sample_body(sampler_id, num_samples=10**9))
    _assert_user_400(too_many, "num_samples", "1000000000", "128")
    long_generation = api.post("/api/v1/asample", _sample_body(sampler_id, sampling_params={"max_tokens": 10**9}))
    _assert_user_400(long_generation, "max_tokens", "512")
    long_prompt = api.post("/api/v1/asample", _sample_body(sampler_id, prompt={"chunks": [{"tokens": [1] * 513}]}))
    _assert_user_400(long_prompt, "prompt length", "513", "512")
    for token in (2**70, 257, -1):
        bad_token = api.post("/api/v1/asample", _sample_body(sampler_id, prompt={"chunks": [{"tokens": [1, token]}]}))
        _assert_user_400(bad_token, str(token), "vocabulary [0, 257)")
    topk = api.post("/api/v1/asample", _sample_body(sampler_id, topk_prompt_logprobs=10**6))
    _assert_user_400(topk, "topk_prompt_logprobs", "64")
    stops = api.post("/api/v1/asample", _sample_body(sampler_id, sampling_params={"stop": list(range(1000))}))
    _assert_user_400(stops, "stop sequences")
    fine = api.post("/api/v1/asample", _sample_body(sampler_id, num_samples=128, seq_id=1,
                                                    sampling_params={"max_tokens": 512 - 3}))
    assert len(api.result(fine.json()["request_id"])["sequences"]) == 128


def _fb_body(model_id: str, seq_id: int, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"forward_backward_input": {"data": data, "loss_fn": "cross_entropy", "loss_fn_config": None},
            "model_id": model_id, "seq_id": seq_id}


def test_training_batches_beyond_the_limits_are_400_user_errors() -> None:
    limits = WorkLimits(max_batch_datums=4, max_batch_tokens=100)
    with LocalService(zero_work=True, long_poll_s=0.3, work_limits=limits) as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        _assert_user_400(api.post("/api/v1/forward_backward", _fb_body(model_id, 1, [datum([1, 2, 3])] * 5)),
                         "number of datums is 5", "maximum of 4")
        forward = {"forward_input": _fb_body(model_id, 2, [datum([1] * 60)] * 2)["forward_backward_input"],
                   "model_id": model_id, "seq_id": 2}
        _assert_user_400(api.post("/api/v1/forward", forward),
                         "number of tokens in the batch is 118", "maximum of 100")
        _assert_user_400(api.forward_backward(model_id, 3, tokens=[1, 2**70, 3]), "datum 0", str(2**70))
        huge_target = datum([1, 2, 3])
        huge_target["loss_fn_inputs"]["target_tokens"]["data"] = [2, 2**40]
        _assert_user_400(api.post("/api/v1/forward_backward", _fb_body(model_id, 4, [huge_target])),
                         "target_tokens", str(2**40), "[0, 257)")
        # Refused requests released their seq_ids: the next one runs at once.
        ok = api.result(api.forward_backward(model_id, 5).json()["request_id"])
        assert ok["loss_fn_output_type"] == "target_token_logprobs"
        api.close()


def test_the_0_38_chunk_size_is_within_the_default_batch_limits(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    batch = [datum([1, 2, 3, 4])] * 1024  # the 0.38 SDK's largest chunk (in datums)
    result = api.result(api.post("/api/v1/forward_backward", _fb_body(model_id, 1, batch)).json()["request_id"])
    assert len(result["loss_fn_outputs"]) == 1024


def test_ttl_beyond_the_limit_is_a_400_user_error(api: Api) -> None:
    model_id = api.create_model(api.create_session())
    api.result(api.save_weights(model_id, 1, "c").json()["request_id"])
    base = f"/api/v1/training_runs/{model_id}/checkpoints/weights/c/ttl"
    for ttl in (10**12, 2**70):
        _assert_user_400(api.http.put(base, json={"ttl_seconds": ttl}), "ttl_seconds",
                         str(WorkLimits().max_ttl_seconds))
    assert api.http.put(base, json={"ttl_seconds": 86400}).status_code == 200


def test_telemetry_beyond_the_limits_is_a_400_and_normal_batches_are_accepted() -> None:
    limits = WorkLimits(max_telemetry_events=3, max_telemetry_event_bytes=200, max_telemetry_batch_bytes=2000)
    with LocalService(zero_work=True, work_limits=limits) as svc:
        api = Api(svc)
        event = {"event": "GENERIC_EVENT", "event_name": "x", "event_data": {}}
        accepted = api.post("/api/v1/telemetry", {"events": [event] * 3, "session_id": "s"})
        assert accepted.status_code == 200 and accepted.json() == {"status": "accepted"}
        _assert_user_400(api.post("/api/v1/telemetry", {"events": [event] * 4}), "number of telemetry events", "3")
        big = {**event, "event_data": {"text": "x" * 300}}
        _assert_user_400(api.post("/api/v1/telemetry", {"events": [big]}), "telemetry event 0")
        _assert_user_400(api.post("/api/v1/telemetry", {"events": [], "pad": "x" * 3000}), "batch size")
        assert len(svc.telemetry_events()) == 3
        api.close()


def test_the_telemetry_log_keeps_its_memory_bounded() -> None:
    log = TelemetryLog(max_events=1000, max_bytes=10_000)
    for _ in range(50):
        log.add_batch({"events": [{"event": "GENERIC_EVENT", "event_data": {"text": "y" * 1000}}]})
    events = log.snapshot()["events"]
    assert 5 <= len(events) <= 10


# ---- ordering --------------------------------------------------------------------------------------

def test_bad_seq_ids_are_refused_and_do_not_disturb_later_ordering() -> None:
    backend = RecordingBackend()
    with LocalService(backend=backend, long_poll_s=1.0, gap_timeout_s=0.3) as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        for bad in (10**30, True, 2.0, "3", 0, -5, 1 + 4096 + 1):
            body: dict[str, Any] = {"adam_params": {}, "model_id": model_id, "seq_id": bad}
            _assert_user_400(api.post("/api/v1/optim_step", body), "seq_id")
        time.sleep(0.5)  # longer than the gap timeout: nothing refused may have become "next"
        ids = [api.forward_backward(model_id, seq_id, tokens=list(range(1, seq_id + 2))).json()["request_id"]
               for seq_id in (3, 2, 1)]
        for request_id in ids:
            api.result(request_id)
        assert backend.operations == ["fwdbwd:1", "fwdbwd:2", "fwdbwd:3"]
        window_edge = api.optim_step(model_id, 3 + 4096)  # the furthest seq_id the window allows
        assert window_edge.status_code == 200
        api.close()


def test_a_sample_seq_id_must_be_a_strict_integer(api: Api) -> None:
    sampler_id = _sampler(api)
    for bad in (True, 1.0, "1"):
        _assert_user_400(api.post("/api/v1/asample", _sample_body(sampler_id, seq_id=bad)), "seq_id")


# ---- archives ----------------------------------------------------------------------------------------

def test_archives_are_built_once_per_version_0600_and_redirect_to_the_configured_address(tmp_path: Path) -> None:
    with LocalService(zero_work=True, data_dir=tmp_path) as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        api.result(api.save_weights(model_id, 1, "big").json()["request_id"])
        url = f"/api/v1/training_runs/{model_id}/checkpoints/weights/big/archive"
        locations = {api.http.get(url, headers={"Host": "evil.example:666"}).headers["location"]
                     for _ in range(20)}
        assert len(locations) == 1
        (location,) = locations
        assert location.startswith(svc.base_url + "/local/v1/archives/")
        files = list((tmp_path / "archives").glob("*.tar"))
        assert len(files) == 1
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        with tarfile.open(fileobj=io.BytesIO(httpx.get(location).content)) as tar:
            assert sorted(tar.getnames()) == ["adapter_config.json", "adapter_model.safetensors", "arrays.npz",
                                              "checkpoint.json"]
        # A new version of the checkpoint: the old archive and its URL go away with the old version.
        api.result(api.save_weights(model_id, 2, "big").json()["request_id"])
        assert httpx.get(location).status_code == 404
        fresh = api.http.get(url).headers["location"]
        assert fresh != location and httpx.get(fresh).status_code == 200
        assert len(list((tmp_path / "archives").glob("*.tar"))) == 1
        api.close()


def test_a_public_url_is_used_for_archive_redirects() -> None:
    with LocalService(zero_work=True, public_url="https://tinker.internal:8443/") as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        api.result(api.save_weights(model_id, 1, "c").json()["request_id"])
        archive = api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints/weights/c/archive")
        assert archive.headers["location"].startswith("https://tinker.internal:8443/local/v1/archives/")
        api.close()


def test_archives_stay_within_the_disk_budget(tmp_path: Path) -> None:
    budget = 40_000  # room for one archive of a ~10 KB checkpoint (plus tar padding), not two
    with LocalService(zero_work=True, data_dir=tmp_path, work_limits=WorkLimits(archive_budget_bytes=budget)) as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        for seq_id, name in enumerate(["one", "two"], start=1):
            api.result(api.save_weights(model_id, seq_id, name).json()["request_id"])
        storage_dir = tmp_path / "runs"
        big = next(storage_dir.glob("*/weights/two/*/arrays.npz"))
        base = f"/api/v1/training_runs/{model_id}/checkpoints/weights"
        first = api.http.get(f"{base}/one/archive").headers["location"]
        second = api.http.get(f"{base}/two/archive").headers["location"]
        assert httpx.get(second).status_code == 200
        total = sum(p.stat().st_size for p in (tmp_path / "archives").glob("*.tar"))
        assert total <= budget
        assert big.exists()
        # Both fit together here (zero-work checkpoints are tiny); a budget below one archive refuses.
        assert first != second
        api.close()
    with LocalService(zero_work=True, data_dir=tmp_path, work_limits=WorkLimits(archive_budget_bytes=1000)) as svc:
        api = Api(svc)
        refused = api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints/weights/one/archive")
        assert refused.status_code == 507
        assert "archive disk budget" in refused.json()["error"] and refused.json()["category"] == "server"
        api.close()


def test_the_oldest_archive_is_evicted_when_the_budget_is_full(tmp_path: Path) -> None:
    cache = ArchiveCache(tmp_path / "archives")
    files = []
    for index in range(3):
        path = tmp_path / f"f{index}.bin"
        path.write_bytes(bytes(5000))
        files.append(path)
    budget = 2 * estimated_tar_size({"a": files[0]})
    life = timedelta(minutes=5)
    token_a, _ = cache.token_for("a", {"a": files[0]}, lifetime=life, budget_bytes=budget)
    token_b, _ = cache.token_for("b", {"b": files[1]}, lifetime=life, budget_bytes=budget)
    assert cache.token_for("a", {"a": files[0]}, lifetime=life, budget_bytes=budget)[0] == token_a  # a: used last
    cache.token_for("c", {"c": files[2]}, lifetime=life, budget_bytes=budget)
    assert cache.path(token_b) is None  # b was the least recently used
    assert cache.path(token_a) is not None
    assert cache.file_count == 2 and cache.bytes_used <= budget
    assert len(list((tmp_path / "archives").glob("*.tar"))) == 2


# ---- ids and messages ---------------------------------------------------------------------------

def test_request_ids_are_unguessable(api: Api) -> None:
    session_id = api.create_session()
    ids = [api.submit_model(session_id, model_seq_id=n)["request_id"] for n in range(20)]
    assert len(set(ids)) == 20
    for request_id in ids:
        assert len(request_id) >= 4 + 22  # "req-" + 128 random bits, url-safe base64
    for first, second in itertools.pairwise(ids):
        pairs = zip(first, second, strict=False)
        shared = sum(1 for _ in itertools.takewhile(lambda pair: pair[0] == pair[1], pairs))
        assert shared < 12  # beyond "req-", nothing in common: no per-service prefix, no counter


def test_error_messages_do_not_reveal_the_data_directory(tmp_path: Path) -> None:
    with LocalService(zero_work=True, data_dir=tmp_path, long_poll_s=0.3) as svc:
        api = Api(svc)
        session_id = api.create_session()
        model_id = api.create_model(session_id)
        path = api.result(api.save_weights(model_id, 1, "lost").json()["request_id"])["path"]
        api.result(api.save_weights(model_id, 2, "broken").json()["request_id"])
        next(tmp_path.glob("runs/*/weights/lost/*/arrays.npz")).unlink()  # the disk lost it
        broken = next(tmp_path.glob("runs/*/weights/broken/*/arrays.npz"))
        broken.unlink()
        broken.mkdir()  # unreadable: a directory where the file should be
        results = []
        for seq_id, name in ((3, "lost"), (4, "broken")):
            load = api.post("/api/v1/load_weights", {"model_id": model_id, "path": f"tinker://{model_id}/weights/{name}",
                                                     "optimizer": False, "seq_id": seq_id})
            results.append(api.result(load.json()["request_id"]))
        for result in results:
            assert "error" in result
            assert str(tmp_path) not in result["error"] and str(tmp_path.resolve()) not in result["error"]
            assert "/runs/" not in result["error"] and "arrays.npz" not in result["error"]
        assert path in results[0]["error"]
        assert "broken" in results[1]["error"]
        api.close()
