"""Every fault action, armed from each control surface: Python, the admin endpoints and the CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.local.support import SESSION_BODY, Api
from tinker_actors.cli import main as cli_main
from tinker_actors.local import FaultRegistry, FaultRule, LocalService

Surface = Callable[[LocalService, dict[str, Any]], None]


def _python(svc: LocalService, rule: dict[str, Any]) -> None:
    svc.faults.add(FaultRule(**rule))


def _http(svc: LocalService, rule: dict[str, Any]) -> None:
    response = httpx.post(f"{svc.base_url}/local/v1/faults", json=rule, headers={"X-API-Key": svc.api_key})
    assert response.status_code == 201, response.text


_CLI_FLAGS = {"status": "--status", "times": "--times", "retry_after": "--retry-after",
              "queue_state": "--queue-state", "delay_s": "--delay", "request_type": "--request-type",
              "every_nth": "--every-nth", "probability": "--probability"}


def _cli(svc: LocalService, rule: dict[str, Any]) -> None:
    argv = ["local", "fault", "add", "--url", svc.base_url, "--api-key", svc.api_key,
            "--endpoint", rule["endpoint"], "--action", rule.get("action", "status")]
    for key, flag in _CLI_FLAGS.items():
        if key in rule:
            argv += [flag, str(rule[key])]
    assert cli_main(argv) == 0


SURFACES = {"python": _python, "http": _http, "cli": _cli}


@pytest.fixture(params=sorted(SURFACES))
def arm(request: pytest.FixtureRequest) -> Surface:
    surface: Surface = SURFACES[request.param]
    return surface


@pytest.fixture
def fresh() -> Iterator[tuple[LocalService, Api]]:
    with LocalService(zero_work=True, long_poll_s=0.3) as svc:
        client = Api(svc)
        yield svc, client
        client.close()


def _sample_body(sampler_id: str, seq_id: int) -> dict[str, Any]:
    return {"num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2]}]}, "sampling_params": {"max_tokens": 1},
            "sampling_session_id": sampler_id, "seq_id": seq_id, "prompt_logprobs": False,
            "topk_prompt_logprobs": 0}


def test_status_fires_a_fixed_number_of_times(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    arm(svc, {"endpoint": "create_session", "status": 503, "times": 2})
    answers = [api.post("/api/v1/create_session", SESSION_BODY) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json()["category"] == "server"
    assert svc.request_counts()["endpoints"]["create_session"]["faulted"] == 2


def test_429_with_retry_after(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    session_id = api.create_session()
    sampler = api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte",
        "model_path": None}).json()["sampling_session_id"]
    arm(svc, {"endpoint": "asample", "status": 429, "retry_after": 2, "times": 1})
    limited = api.post("/api/v1/asample", _sample_body(sampler, 0))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert api.post("/api/v1/asample", _sample_body(sampler, 1)).status_code == 200


def test_408_with_a_queue_state_and_410_for_one_future_type(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    model_id = api.create_model(api.create_session())
    fwdbwd = api.forward_backward(model_id, 1).json()["request_id"]
    optim = api.optim_step(model_id, 2).json()["request_id"]
    arm(svc, {"endpoint": "retrieve_future", "status": 408, "queue_state": "paused_capacity", "times": 1})
    paused = api.poll(fwdbwd)
    assert paused.status_code == 408
    assert paused.json() == {"type": "try_again", "request_id": fwdbwd, "queue_state": "paused_capacity"}
    arm(svc, {"endpoint": "retrieve_future", "status": 410, "request_type": "OptimStep"})
    assert api.poll(optim).status_code == 410
    assert api.poll(fwdbwd).status_code == 200  # other future types are unaffected


def test_delay(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    arm(svc, {"endpoint": "get_server_capabilities", "action": "delay", "delay_s": 0.3, "times": 1})
    started = time.monotonic()
    assert api.http.get("/api/v1/get_server_capabilities").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_drop_before_processing(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    arm(svc, {"endpoint": "create_session", "action": "drop", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/api/v1/create_session", SESSION_BODY)
    assert api.http.get("/api/v1/sessions").json()["sessions"] == []  # it never ran


def test_drop_after_processing_then_the_retry_is_deduplicated(fresh: tuple[LocalService, Api],
                                                             arm: Surface) -> None:
    svc, api = fresh
    model_id = api.create_model(api.create_session())
    arm(svc, {"endpoint": "optim_step", "action": "drop_after", "times": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        api.optim_step(model_id, 1)
    retried = api.optim_step(model_id, 1)  # the client re-sends: same seq_id
    assert api.result(retried.json()["request_id"]) == {"metrics": {}}
    counts = svc.request_counts()
    assert counts["endpoints"]["optim_step"]["executed"] == 1
    assert {"id": model_id, "seq_id": 1, "endpoint": "optim_step", "received": 2, "executed": 1} \
        in counts["sequenced"]


def test_never_complete(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    model_id = api.create_model(api.create_session())
    arm(svc, {"endpoint": "forward_backward", "action": "never_complete", "times": 1})
    stuck = api.forward_backward(model_id, 1)
    assert stuck.status_code == 200
    for _ in range(2):
        assert api.poll(stuck.json()["request_id"]).status_code == 408
    after = api.optim_step(model_id, 2).json()["request_id"]  # later work is not blocked by it
    assert api.result(after) == {"metrics": {}}
    assert api.poll(stuck.json()["request_id"]).status_code == 408


def test_never_complete_holds_a_plain_request(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    arm(svc, {"endpoint": "healthz", "action": "never_complete", "times": 1})
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{svc.base_url}/api/v1/healthz", headers={"X-API-Key": "k"}, timeout=0.5)
    assert api.http.get("/api/v1/healthz").status_code == 200


def test_malformed_json(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    arm(svc, {"endpoint": "get_server_capabilities", "action": "malformed_json", "times": 1})
    response = api.http.get("/api/v1/get_server_capabilities")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_restart(fresh: tuple[LocalService, Api], arm: Surface) -> None:
    svc, api = fresh
    session_id = api.create_session()
    port = svc.port
    arm(svc, {"endpoint": "healthz", "action": "restart", "times": 1})
    with pytest.raises(httpx.TransportError):
        api.http.get("/api/v1/healthz")
    deadline = time.monotonic() + 10
    while svc.restarts < 1 or not svc.running:
        assert time.monotonic() < deadline, "the service did not restart"
        time.sleep(0.05)
    assert svc.port == port
    assert api.http.get("/api/v1/healthz").status_code == 200
    assert session_id in api.http.get("/api/v1/sessions").json()["sessions"]


def test_path_globs_every_nth_and_seeded_probability(fresh: tuple[LocalService, Api]) -> None:
    svc, api = fresh
    svc.faults.add(FaultRule(endpoint="/api/v1/get_*", status=500, every_nth=3))
    codes = [api.http.get("/api/v1/get_server_capabilities").status_code for _ in range(6)]
    assert codes == [200, 200, 500, 200, 200, 500]
    assert api.http.get("/api/v1/healthz").status_code == 200  # not matched by the glob

    def draws(seed: int) -> list[bool]:
        registry = FaultRegistry(seed=seed)
        registry.add(FaultRule(endpoint="*", probability=0.5))
        return [registry.check("asample", "/api/v1/asample", "POST", None) is not None for _ in range(40)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert 5 < sum(draws(7)) < 35


def test_list_remove_and_clear_from_each_surface(fresh: tuple[LocalService, Api],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    svc, api = fresh
    first = svc.faults.add(FaultRule(endpoint="asample", status=503))
    _http(svc, {"endpoint": "create_session", "action": "drop"})
    listed = api.admin("GET", "faults").json()["rules"]
    assert [r["rule"]["endpoint"] for r in listed] == ["asample", "create_session"]
    assert cli_main(["local", "fault", "list", "--url", svc.base_url, "--api-key", svc.api_key]) == 0
    assert "create_session" in capsys.readouterr().out
    assert api.admin("DELETE", f"faults/{first}").json() == {"removed": first}
    assert [r["rule"]["endpoint"] for r in svc.faults.list_rules()] == ["create_session"]
    assert cli_main(["local", "fault", "clear", "--url", svc.base_url, "--api-key", svc.api_key]) == 0
    assert svc.faults.list_rules() == []
    bad = api.admin("POST", "faults", {"endpoint": "x", "action": "explode"})
    assert bad.status_code == 400
    assert cli_main(["local", "fault", "list", "--url", "http://127.0.0.1:1", "--api-key", "k"]) == 1


def test_custom_body_and_headers_from_each_surface(fresh: tuple[LocalService, Api]) -> None:
    svc, api = fresh
    svc.faults.add(FaultRule(endpoint="healthz", status=503, body="down for maintenance",
                             headers={"X-Why": "python"}, times=1))
    _http(svc, {"endpoint": "healthz", "status": 500, "body": {"detail": "http"}, "headers": {"X-Why": "http"},
                "times": 1})
    assert cli_main(["local", "fault", "add", "--url", svc.base_url, "--api-key", svc.api_key,
                     "--endpoint", "healthz", "--status", "502", "--body", '{"detail": "cli"}',
                     "--header", "X-Why: cli", "--times", "1"]) == 0
    first, second, third = (api.http.get("/api/v1/healthz") for _ in range(3))
    assert (first.status_code, first.text, first.headers["x-why"]) == (503, "down for maintenance", "python")
    assert (second.status_code, second.json(), second.headers["x-why"]) == (500, {"detail": "http"}, "http")
    assert (third.status_code, third.json(), third.headers["x-why"]) == (502, {"detail": "cli"}, "cli")
    assert api.http.get("/api/v1/healthz").status_code == 200
