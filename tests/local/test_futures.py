"""The future protocol over real HTTP: quick request ids, long polls, re-reads, 410, error payloads."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.local.support import Api, RecordingBackend
from tinker_actors.local import LocalService


@pytest.fixture
def gated() -> Iterator[tuple[LocalService, RecordingBackend, Api]]:
    backend = RecordingBackend()
    with LocalService(backend=backend, long_poll_s=0.3, result_ttl_s=0.5) as svc:
        client = Api(svc)
        yield svc, backend, client
        backend.gate.set()
        client.close()


def test_pending_poll_is_held_then_answers_408_try_again(gated: tuple[LocalService, RecordingBackend, Api]) -> None:
    _, backend, api = gated
    model_id = api.create_model(api.create_session())
    backend.gate.clear()
    started = time.monotonic()
    submitted = api.forward_backward(model_id, 1)
    assert submitted.status_code == 200
    assert time.monotonic() - started < 0.25  # the request id comes back at once
    request_id = submitted.json()["request_id"]
    assert submitted.json()["model_id"] == model_id

    started = time.monotonic()
    pending = api.poll(request_id)
    held = time.monotonic() - started
    assert pending.status_code == 408
    assert pending.json() == {"type": "try_again", "request_id": request_id, "queue_state": "active"}
    assert 0.25 <= held < 2.0

    backend.gate.set()
    done = api.poll(request_id)  # the long poll returns as soon as the result is there
    assert done.status_code == 200
    assert done.json()["metrics"] == {"loss:sum": 0.0}
    assert api.poll(request_id).json() == done.json()  # results are re-readable


def test_unknown_and_expired_ids_answer_410(gated: tuple[LocalService, RecordingBackend, Api]) -> None:
    _, _, api = gated
    unknown = api.poll("req-never-issued")
    assert unknown.status_code == 410
    assert "req-never-issued" in unknown.json()["error"]

    model_id = api.create_model(api.create_session())
    request_id = api.optim_step(model_id, 1).json()["request_id"]
    assert api.result(request_id) == {"metrics": {}}
    time.sleep(0.7)  # result_ttl_s=0.5
    assert api.poll(request_id).status_code == 410


def test_model_errors_are_user_error_payloads(api: Api) -> None:
    failed = api.submit_model(api.create_session(), base_model="no-such-model")
    result = api.result(failed["request_id"])
    assert result["category"] == "user"
    assert "no-such-model" in result["error"]
    # The failed model refuses later work clearly.
    refused = api.forward_backward(failed["model_id"], 1)
    assert refused.status_code == 404
    assert "creation failed" in refused.json()["error"]


def test_real_model_reports_context_window_as_user_error() -> None:
    with LocalService(long_poll_s=2.0) as svc:
        api = Api(svc)
        model_id = api.create_model(api.create_session())
        request_id = api.forward_backward(model_id, 1, tokens=list(range(200)) * 3).json()["request_id"]
        result = api.result(request_id)
        assert result["category"] == "user"
        assert "context" in result["error"].lower()
        ok = api.result(api.forward_backward(model_id, 2, tokens=list(b"hello world")).json()["request_id"])
        assert ok["loss_fn_output_type"] == "target_token_logprobs"
        assert len(ok["loss_fn_outputs"][0]["logprobs"]["data"]) == 10
        assert ok["loss_fn_outputs"][0]["logprobs"]["dtype"] == "float32"
        api.close()
