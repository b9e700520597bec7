"""Per-model execution in seq_id order, de-duplication of repeats, and the gap timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.local.support import SESSION_BODY, Api, RecordingBackend, datum
from tinker_actors.local import LocalService


@pytest.fixture
def recorded() -> Iterator[tuple[LocalService, RecordingBackend, Api]]:
    backend = RecordingBackend()
    with LocalService(backend=backend, long_poll_s=1.0, gap_timeout_s=0.4) as svc:
        client = Api(svc)
        yield svc, backend, client
        backend.gate.set()
        client.close()


def _fwdbwd(api: Api, model_id: str, seq_id: int, length: int) -> str:
    response = api.forward_backward(model_id, seq_id, tokens=list(range(1, length + 2)))
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def test_out_of_order_arrivals_run_in_seq_order(recorded: tuple[LocalService, RecordingBackend, Api]) -> None:
    _, backend, api = recorded
    model_id = api.create_model(api.create_session())
    # seq 3, then 2, then 1 arrive; tokens lengths tell them apart.
    ids = [_fwdbwd(api, model_id, 3, 3), _fwdbwd(api, model_id, 2, 2)]
    time.sleep(0.1)
    assert backend.operations == []  # nothing runs while seq 1 is missing
    ids.append(_fwdbwd(api, model_id, 1, 1))
    for request_id in ids:
        api.result(request_id)
    assert backend.operations == ["fwdbwd:1", "fwdbwd:2", "fwdbwd:3"]


def test_concurrent_submissions_from_many_connections_keep_order() -> None:
    backend = RecordingBackend()
    # A generous gap timeout: ten threads connecting on a loaded machine may take longer than 0.4 s.
    with LocalService(backend=backend, long_poll_s=1.0, gap_timeout_s=10.0) as svc:
        api = Api(svc)
        _run_concurrent_submissions(svc, backend, api)
        api.close()


def _run_concurrent_submissions(svc: LocalService, backend: RecordingBackend, api: Api) -> None:
    model_id = api.create_model(api.create_session())
    results: dict[int, str] = {}

    def send(seq_id: int) -> None:
        with httpx.Client(base_url=svc.base_url, headers={"X-API-Key": "k"}) as client:
            if seq_id % 2:
                body = {"forward_backward_input": {"data": [datum(list(range(1, seq_id + 2)))],
                                                   "loss_fn": "cross_entropy", "loss_fn_config": None},
                        "model_id": model_id, "seq_id": seq_id}
                results[seq_id] = client.post("/api/v1/forward_backward", json=body).json()["request_id"]
            else:
                body2 = {"adam_params": {"learning_rate": float(seq_id)}, "model_id": model_id, "seq_id": seq_id}
                results[seq_id] = client.post("/api/v1/optim_step", json=body2).json()["request_id"]

    threads = [threading.Thread(target=send, args=(seq,)) for seq in reversed(range(1, 11))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seq_id in range(1, 11):
        api.result(results[seq_id])
    expected = [f"fwdbwd:{s}" if s % 2 else f"optim:{s}" for s in range(1, 11)]
    assert backend.operations == expected


def test_repeated_seq_id_returns_the_same_future_and_runs_once(
        recorded: tuple[LocalService, RecordingBackend, Api]) -> None:
    svc, backend, api = recorded
    model_id = api.create_model(api.create_session())
    first = api.optim_step(model_id, 1).json()
    again = api.optim_step(model_id, 1).json()
    assert first == again
    api.result(first["request_id"])
    assert backend.operations == ["optim:0.0001"]
    counts = api.admin("GET", "requests").json()
    assert counts["endpoints"]["optim_step"]["received"] == 2
    assert counts["endpoints"]["optim_step"]["duplicates"] == 1
    assert counts["endpoints"]["optim_step"]["executed"] == 1
    assert {"id": model_id, "seq_id": 1, "endpoint": "optim_step", "received": 2, "executed": 1} \
        in counts["sequenced"]
    assert svc.request_counts() == counts

    clash = api.forward_backward(model_id, 1)
    assert clash.status_code == 400
    assert "already used" in clash.json()["error"]


def test_missing_seq_id_is_skipped_after_the_gap_timeout(
        recorded: tuple[LocalService, RecordingBackend, Api]) -> None:
    _, backend, api = recorded
    model_id = api.create_model(api.create_session())
    started = time.monotonic()
    request_id = _fwdbwd(api, model_id, 2, 2)  # seq 1 never arrives
    api.result(request_id)
    assert time.monotonic() - started >= 0.35
    late = _fwdbwd(api, model_id, 1, 1)  # arrives after its turn: run when it comes
    api.result(late)
    assert backend.operations == ["fwdbwd:2", "fwdbwd:1"]


def test_create_model_and_sampling_sessions_are_deduplicated(api: Api) -> None:
    session_id = api.create_session()
    first = api.submit_model(session_id, model_seq_id=0)
    assert api.submit_model(session_id, model_seq_id=0) == first
    second = api.submit_model(session_id, model_seq_id=1)
    assert second["model_id"] != first["model_id"]
    assert first["model_id"] == f"{session_id}:train:0"

    body = {"session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte", "model_path": None}
    one = api.post("/api/v1/create_sampling_session", body).json()
    two = api.post("/api/v1/create_sampling_session", body).json()
    assert one == two == {"sampling_session_id": f"{session_id}:sample:0"}
    sample = {"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2]}]}, "sampling_params": {"max_tokens": 2},
              "sampling_session_id": one["sampling_session_id"], "seq_id": 0, "prompt_logprobs": False,
              "topk_prompt_logprobs": 0}
    a = api.post("/api/v1/asample", sample).json()
    b = api.post("/api/v1/asample", sample).json()
    assert a == b
    result = api.result(a["request_id"])
    assert result["sequences"][0]["tokens"] == [1, 1]


def test_create_session_rejects_unknown_fields_with_a_clear_400(api: Api) -> None:
    response = api.post("/api/v1/create_session", {**SESSION_BODY, "surprise": 1})
    assert response.status_code == 400
    assert "surprise" in response.json()["error"]


def test_a_refused_request_does_not_stall_the_next_seq_id(
        recorded: tuple[LocalService, RecordingBackend, Api]) -> None:
    _, backend, api = recorded
    model_id = api.create_model(api.create_session())
    refused = api.save_weights(model_id, 1, "bad/name")
    assert refused.status_code == 400
    started = time.monotonic()
    api.result(_fwdbwd(api, model_id, 2, 2))
    assert time.monotonic() - started < 0.3  # no gap_timeout_s (0.4 s) wait for seq 1
    resent = api.optim_step(model_id, 1)  # a valid re-send of the refused seq_id is accepted
    assert resent.status_code == 200
    api.result(resent.json()["request_id"])
    assert backend.operations == ["fwdbwd:2", "optim:0.0001"]


def test_samples_with_the_same_seq_id_from_different_calls_are_not_merged(api: Api) -> None:
    session_id = api.create_session()
    sampler = api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte",
        "model_path": None}).json()["sampling_session_id"]
    body = {"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2]}]}, "sampling_params": {"max_tokens": 1},
            "sampling_session_id": sampler, "seq_id": 0, "prompt_logprobs": False, "topk_prompt_logprobs": 0}

    def send(key: str) -> str:
        response = api.http.post("/api/v1/asample", json=body, headers={"X-Idempotency-Key": key})
        request_id: str = response.json()["request_id"]
        return request_id

    first = send("call-a")
    assert send("call-a") == first  # a retry of the same call
    assert send("call-b") != first  # another process's call that happens to use seq_id 0 too
