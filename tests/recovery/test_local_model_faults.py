"""The local service loses models on purpose (drop, corrupt, restart), over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.local.support import Api
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper


@pytest.fixture
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.3) as svc:
        yield svc


@pytest.fixture
def api(service: LocalService) -> Iterator[Api]:
    client = Api(service)
    yield client
    client.close()


def _trained_model(api: Api, steps: int) -> str:
    session = api.create_session()
    model_id = api.create_model(session)
    seq = 1
    for _ in range(steps):
        for response in (api.forward_backward(model_id, seq), api.optim_step(model_id, seq + 1)):
            assert response.status_code == 200, response.text
            assert "error" not in api.result(response.json()["request_id"])
        seq += 2
    return model_id


def _run(api: Api, model_id: str) -> dict[str, object]:
    response = api.http.get(f"/api/v1/training_runs/{model_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _states(api: Api) -> dict[str, dict[str, object]]:
    response = api.admin("GET", "models")
    assert response.status_code == 200, response.text
    return {model["model_id"]: model for model in response.json()["models"]}


def test_dropped_model_answers_404_fails_its_queued_requests_and_its_run_reports_corrupted(api: Api) -> None:
    model_id = _trained_model(api, steps=2)
    assert _states(api)[model_id]["optimizer_step"] == 2  # the server-side step counter, read over HTTP
    assert _run(api, model_id)["corrupted"] is False
    # seq 5 is missing: seq 6 waits in the model's queue (for the gap) while the model is dropped.
    queued = api.optim_step(model_id, 6).json()["request_id"]
    assert api.admin("POST", f"models/{model_id}/drop").json() == {"dropped": model_id}

    refused = api.forward_backward(model_id, 7)
    assert refused.status_code == 404
    assert "lost by the service" in refused.json()["error"]
    failed = api.result(queued)
    assert failed["category"] == "server" and "lost by the service" in failed["error"]
    assert _run(api, model_id)["corrupted"] is True
    assert _states(api)[model_id]["status"] == "lost"
    assert api.admin("POST", f"models/{model_id}/drop").status_code == 404  # nothing left to drop


def test_corrupted_model_accepts_requests_that_fail_with_a_server_error(service: LocalService, api: Api) -> None:
    model_id = _trained_model(api, steps=1)
    assert service.faults.corrupt_model(model_id) is True
    accepted = api.forward_backward(model_id, 3)
    assert accepted.status_code == 200
    failed = api.result(accepted.json()["request_id"])
    assert failed["category"] == "server" and "corrupted" in failed["error"]
    assert _run(api, model_id)["corrupted"] is True
    assert _states(api)[model_id]["status"] == "corrupted"
    assert service.faults.corrupt_model(model_id) is False


def test_a_rule_drops_the_model_named_by_the_nth_matching_request(service: LocalService, api: Api) -> None:
    faults = FaultHelper(service)
    rule = faults.drop_model_on("optim_step", every_nth=2)
    session = api.create_session()
    model_id = api.create_model(session)
    assert api.forward_backward(model_id, 1).status_code == 200
    first = api.optim_step(model_id, 2)
    assert first.status_code == 200 and "error" not in api.result(first.json()["request_id"])
    assert api.forward_backward(model_id, 3).status_code == 200
    second = api.optim_step(model_id, 4)  # the 2nd optim_step: its model is dropped just before it is handled
    assert second.status_code == 404
    assert faults.fired(rule) == 1
    assert _run(api, model_id)["corrupted"] is True


def test_restart_loses_loaded_models_and_keeps_runs_checkpoints_and_sessions(service: LocalService,
                                                                             api: Api) -> None:
    model_id = _trained_model(api, steps=1)
    saved = api.result(api.save_weights(model_id, 3, "kept").json()["request_id"])
    assert api.admin("POST", "restart").status_code == 202
    deadline = time.monotonic() + 10
    while service.restarts == 0 or not service.running:
        assert time.monotonic() < deadline, "the service did not restart"
        time.sleep(0.05)
    api.http.close()
    api.http = Api(service).http
    assert api.forward_backward(model_id, 4).status_code == 404
    assert _run(api, model_id)["corrupted"] is True
    checkpoints = api.http.get(f"/api/v1/training_runs/{model_id}/checkpoints").json()["checkpoints"]
    assert [c["tinker_path"] for c in checkpoints] == [saved["path"]]
    assert model_id not in _states(api)


def test_model_controls_need_a_running_service(tmp_path: object) -> None:
    service = LocalService()
    with pytest.raises(RuntimeError, match="not running"):
        service.faults.drop_model("nope")
    service.stop()


def test_the_cli_lists_drops_and_corrupts_models_and_restarts_the_service(
        service: LocalService, api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    from tinker_actors.cli import main

    dropped, corrupted = _trained_model(api, steps=1), _trained_model(api, steps=2)
    shell = ["--url", service.base_url, "--api-key", service.api_key]
    assert main(["local", "model", "list", *shell]) == 0
    listed = {model["model_id"]: model for model in json.loads(capsys.readouterr().out)["models"]}
    assert listed[dropped]["optimizer_step"] == 1 and listed[corrupted]["optimizer_step"] == 2
    assert main(["local", "model", "drop", *shell, dropped]) == 0
    assert json.loads(capsys.readouterr().out) == {"dropped": dropped}
    assert main(["local", "model", "corrupt", *shell, corrupted]) == 0
    capsys.readouterr()
    assert main(["local", "model", "drop", *shell, dropped]) == 1  # already gone
    assert "404" in capsys.readouterr().err
    assert {_states(api)[dropped]["status"], _states(api)[corrupted]["status"]} == {"lost", "corrupted"}
    restarts = service.restarts
    assert main(["local", "restart", *shell]) == 0
    deadline = time.monotonic() + 10
    while service.restarts == restarts or not service.running:
        assert time.monotonic() < deadline, "the service did not restart"
        time.sleep(0.05)
