"""Simulated billing of the local service, over real HTTP: budgets, 402, top-ups, usage events, storage.

Two users (alice, bob) each with their own key. ``datum([1, 2, 3, 4])`` trains on 3 input tokens; a
zero-work sample generates ``min(max_tokens, 16)`` tokens per sample.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.local.support import Api, RecordingBackend
from tests.wire.conftest import OFFICIAL_038_PYTHON, REPO
from tinker_actors.cli import main
from tinker_actors.cli.local import parse_budgets
from tinker_actors.local import LocalService
from tinker_actors.local.engine.billing import InvalidBudgetError
from tinker_actors.local.engine.storage import DEFAULT_PROJECT
from tinker_actors.local.server.faults import FaultAction, FaultRule

KEYS = {"alice": "tml-alice", "bob": "tml-bob"}


@contextmanager
def _service(billing: dict[str, int | None] | None = None, **options: Any) -> Iterator[LocalService]:
    options.setdefault("zero_work", True)
    with LocalService(long_poll_s=0.3, gap_timeout_s=0.5, api_keys=KEYS, billing=billing, **options) as svc:
        yield svc


@contextmanager
def _clients(svc: LocalService) -> Iterator[tuple[Api, Api]]:
    alice, bob = Api(svc, KEYS["alice"]), Api(svc, KEYS["bob"])
    try:
        yield alice, bob
    finally:
        alice.close()
        bob.close()


def _model(api: Api) -> tuple[str, str]:
    session_id = api.create_session()
    return session_id, api.create_model(session_id)


def _train(api: Api, model_id: str, seq_id: int) -> dict[str, Any]:
    """One forward_backward of 3 tokens, to its result."""
    response = api.forward_backward(model_id, seq_id)
    assert response.status_code == 200, response.text
    result = api.result(response.json()["request_id"])
    assert "error" not in result, result
    return result


def _sampler(api: Api, session_id: str) -> str:
    response = api.post("/api/v1/create_sampling_session", {
        "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte", "model_path": None})
    assert response.status_code == 200, response.text
    sampler_id: str = response.json()["sampling_session_id"]
    return sampler_id


def _sample(api: Api, sampler_id: str, seq_id: int, *, prompt: list[int], max_tokens: int,
            num_samples: int = 1) -> httpx.Response:
    return api.post("/api/v1/asample", {
        "num_samples": num_samples, "prompt": {"chunks": [{"tokens": prompt}]},
        "sampling_params": {"max_tokens": max_tokens}, "sampling_session_id": sampler_id, "seq_id": seq_id,
        "prompt_logprobs": False, "topk_prompt_logprobs": 0})


def _assert_billing_402(response: httpx.Response, user: str) -> None:
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["category"] == "user"
    assert body["error"].startswith("billing: ") and repr(user) in body["error"], body
    assert "top" in body["error"]  # says how to get going again


def _this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _usage(api: Api) -> dict[str, Any]:
    start = _this_hour()
    response = api.http.get("/api/v1/billing/usage/events", params={
        "starting_on": start.isoformat(), "ending_before": (start + timedelta(hours=1)).isoformat()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _tokens_by_kind(usage: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in usage["data"]:
        info = row["event_info"]
        totals[info["type"]] = totals.get(info["type"], 0) + info["token_count"]
    return totals


# ---- budgets and the 402 gate ----------------------------------------------------------------------
def test_without_budgets_everyone_is_unlimited_and_usage_is_still_recorded() -> None:
    with _service() as svc, _clients(svc) as (alice, _):
        _, model_id = _model(alice)
        for seq_id in range(1, 4):
            _train(alice, model_id, seq_id)
        account = svc.billing.account("alice")
        assert account.budget is None and not account.spent and account.used == 9
        assert _tokens_by_kind(_usage(alice)) == {"training": 9}


def test_a_spent_budget_answers_402_for_that_user_only_and_a_top_up_lets_the_next_request_through() -> None:
    with _service({"alice": 5}) as svc, _clients(svc) as (alice, bob):
        _, model_id = _model(alice)
        _, bob_model = _model(bob)
        _train(alice, model_id, 1)  # 5 -> 2
        _train(alice, model_id, 2)  # 2 -> -1: accepted while the balance was positive
        assert svc.billing.account("alice").budget == -1
        _assert_billing_402(alice.forward_backward(model_id, 3), "alice")
        for seq_id in range(1, 4):  # bob (no budget: unlimited) is not affected
            _train(bob, bob_model, seq_id)
        # a top-up that leaves the balance at 0 is not enough; one more token is
        top_up = alice.admin("POST", "billing/users/alice/top-up", {"tokens": 1})
        assert top_up.status_code == 200 and top_up.json()["budget"] == 0 and top_up.json()["spent"]
        _assert_billing_402(alice.forward_backward(model_id, 3), "alice")
        top_up = alice.admin("POST", "billing/users/alice/top-up", {"tokens": 1})
        assert top_up.json() == {"user": "alice", "budget": 1, "used": 6, "unlimited": False, "spent": False}
        _train(alice, model_id, 3)  # the refused seq_id, sent again: it took no place in the model's order
        assert svc.billing.account("alice").budget == -2
        assert svc.billing.account("bob").used == 9


def test_work_accepted_before_the_budget_ran_out_completes_and_is_charged() -> None:
    backend = RecordingBackend()
    with _service({"alice": 4}, zero_work=False, backend=backend) as svc, _clients(svc) as (alice, _):
        _, model_id = _model(alice)
        backend.gate.clear()  # the model holds its first operation: nothing is charged yet
        accepted = [alice.forward_backward(model_id, seq_id) for seq_id in (1, 2, 3)]
        assert [r.status_code for r in accepted] == [200, 200, 200]
        backend.gate.set()
        for response in accepted:
            assert "error" not in alice.result(response.json()["request_id"])
        assert backend.operations == ["fwdbwd:3"] * 3
        assert svc.billing.account("alice").budget == 4 - 9
        _assert_billing_402(alice.forward_backward(model_id, 4), "alice")


def test_a_re_send_of_an_accepted_request_gets_its_future_even_once_the_budget_is_spent() -> None:
    with _service({"alice": 3}) as svc, _clients(svc) as (alice, _):
        _, model_id = _model(alice)
        svc.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.DROP_AFTER, times=1))
        with pytest.raises(httpx.TransportError):  # accepted, then the answer is lost
            alice.forward_backward(model_id, 1)
        deadline = time.monotonic() + 10
        while svc.billing.account("alice").used < 3:
            assert time.monotonic() < deadline, "the accepted forward_backward never finished"
            time.sleep(0.02)
        again = alice.forward_backward(model_id, 1)  # the client's retry of the same call
        assert again.status_code == 200, again.text
        assert "error" not in alice.result(again.json()["request_id"])
        assert svc.billing.account("alice").used == 3  # ran and was charged once
        _assert_billing_402(alice.forward_backward(model_id, 2), "alice")


def test_sampling_is_charged_prompt_and_generated_tokens_and_refused_once_spent() -> None:
    with _service({"alice": 20}) as svc, _clients(svc) as (alice, bob):
        session_id, _ = _model(alice)
        sampler_id = _sampler(alice, session_id)
        first = _sample(alice, sampler_id, 1, prompt=[1, 2, 3, 4, 5], max_tokens=4, num_samples=3)
        assert first.status_code == 200, first.text
        assert len(alice.result(first.json()["request_id"])["sequences"]) == 3
        account = svc.billing.account("alice")
        assert (account.used, account.budget) == (5 + 3 * 4, 20 - 17)
        second = _sample(alice, sampler_id, 2, prompt=[1, 2], max_tokens=2)
        assert second.status_code == 200
        alice.result(second.json()["request_id"])  # 3 - 4 = -1
        _assert_billing_402(_sample(alice, sampler_id, 3, prompt=[1, 2], max_tokens=2), "alice")
        repeat = _sample(alice, sampler_id, 2, prompt=[1, 2], max_tokens=2)  # a re-send of an accepted sample
        assert repeat.status_code == 200 and repeat.json()["request_id"] == second.json()["request_id"]
        bob_session, _ = _model(bob)
        assert _sample(bob, _sampler(bob, bob_session), 1, prompt=[1], max_tokens=1).status_code == 200
        assert _tokens_by_kind(_usage(alice)) == {"sampling_prefill": 7, "sampling_sample": 14}
        events = alice.admin("GET", "billing/events?user=alice").json()["events"]
        assert [(e["kind"], e["tokens"]) for e in events] == [
            ("sampling_prefill", 5), ("sampling_sample", 12), ("sampling_prefill", 2), ("sampling_sample", 2)]
        assert {e["model_id"] for e in events} == {sampler_id} and {e["session_id"] for e in events} == {session_id}


def test_a_default_budget_applies_to_every_user_not_named() -> None:
    with _service({"*": 2, "bob": None}) as svc, _clients(svc) as (alice, bob):
        _, model_id = _model(alice)
        _, bob_model = _model(bob)
        _train(alice, model_id, 1)
        _assert_billing_402(alice.forward_backward(model_id, 2), "alice")
        for seq_id in range(1, 3):
            _train(bob, bob_model, seq_id)
        shown = alice.admin("GET", "billing").json()
        assert shown["default_budget"] == 2
        assert {a["user"]: (a["budget"], a["used"]) for a in shown["accounts"]} == {"alice": (-1, 3),
                                                                                   "bob": (None, 6)}


def test_admin_endpoints_set_and_check_budgets() -> None:
    with _service() as svc, _clients(svc) as (alice, _):
        assert alice.admin("GET", "billing/users/carol").json() == {
            "user": "carol", "budget": None, "used": 0, "unlimited": True, "spent": False}
        assert alice.admin("PUT", "billing/users/carol", {"budget": 0}).json()["spent"] is True
        assert alice.admin("PUT", "billing/users/carol", {"budget": None}).json()["unlimited"] is True
        top_up = alice.admin("POST", "billing/users/carol/top-up", {"tokens": 5})  # unlimited stays unlimited
        assert top_up.status_code == 200 and top_up.json()["budget"] is None
        for method, path, body in (("PUT", "billing/users/carol", {"budget": -1}),
                                   ("PUT", "billing/users/carol", {"budget": 1.5}),
                                   ("PUT", "billing/users/carol", {"tokens": 1}),
                                   ("POST", "billing/users/carol/top-up", {"tokens": -3}),
                                   ("POST", "billing/users/carol/top-up", {"tokens": True}),
                                   ("PUT", "billing/users/*", {"budget": 5})):
            refused = alice.admin(method, path, body)
            assert refused.status_code == 400 and refused.json()["category"] == "user", (path, body, refused.text)
        assert svc.billing.account("carol").budget is None
    with pytest.raises(InvalidBudgetError):
        LocalService(zero_work=True, billing={"alice": -5})


def test_fault_rules_apply_before_the_budget_gate() -> None:
    with _service({"alice": 0}) as svc, _clients(svc) as (alice, _):
        _, model_id = _model(alice)
        svc.faults.add(FaultRule(endpoint="forward_backward", status=503, times=1))
        assert alice.forward_backward(model_id, 1).status_code == 503
        _assert_billing_402(alice.forward_backward(model_id, 1), "alice")


# ---- the official SDK's billing reads ----------------------------------------------------------------
def test_usage_events_are_hourly_rows_per_kind_model_and_session_for_the_caller_only() -> None:
    with _service() as svc, _clients(svc) as (alice, bob):
        session_a, model_a = _model(alice)
        session_b, model_b = _model(alice)
        _train(alice, model_a, 1)
        _train(alice, model_a, 2)
        _train(alice, model_b, 1)
        _, bob_model = _model(bob)
        _train(bob, bob_model, 1)
        usage = _usage(alice)
        hour = _this_hour()
        rows = {(row["session_id"], row["event_info"]["type"]): row for row in usage["data"]}
        assert set(rows) == {(session_a, "training"), (session_b, "training")}
        assert usage["data"][0]["session_id"] == session_a  # most tokens first within the hour
        row = rows[(session_a, "training")]
        assert row == {
            "bucket_start": hour.isoformat(), "bucket_end": (hour + timedelta(hours=1)).isoformat(),
            "base_model": "tiny-byte", "user_id": "alice", "user_name": "alice", "session_id": session_a,
            "project_id": DEFAULT_PROJECT, "estimated_cost_usd": None, "effective_rate_usd_per_million_tokens": None,
            "effective_rate_usd_per_gigabyte_month": None, "event_info": {"type": "training", "token_count": 6}}
        assert rows[(session_b, "training")]["event_info"]["token_count"] == 3
        assert set(usage["sessions"]) == {session_a, session_b} and usage["cost_data_through"] is None
        assert _tokens_by_kind(_usage(bob)) == {"training": 3}
        earlier = alice.http.get("/api/v1/billing/usage/events", params={
            "starting_on": (hour - timedelta(hours=2)).isoformat(), "ending_before": hour.isoformat()})
        assert earlier.status_code == 200 and earlier.json()["data"] == []


@pytest.mark.parametrize(("starting_on", "ending_before", "words"), [
    (None, "2026-01-01T01:00:00Z", "starting_on is required"),
    ("2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z", "aligned to a UTC hour"),
    ("2026-01-01T00:00:00+05:30", "2026-01-01T01:00:00Z", "aligned to a UTC hour"),
    ("2026-01-01T01:00:00Z", "2026-01-01T01:00:00Z", "after starting_on"),
    ("2026-01-01T00:00:00Z", "2026-01-15T01:00:00Z", "at most 14 days"),
    ("2999-01-01T00:00:00Z", "2999-01-02T00:00:00Z", "in the future"),
    ("yesterday", "2026-01-01T01:00:00Z", "RFC 3339"),
])
def test_usage_events_check_their_window(api: Api, starting_on: str | None, ending_before: str, words: str) -> None:
    params = {"ending_before": ending_before} | ({"starting_on": starting_on} if starting_on else {})
    response = api.http.get("/api/v1/billing/usage/events", params=params)
    assert response.status_code == 400 and words in response.json()["error"], response.text


def test_checkpoint_storage_usage_is_the_callers_stored_checkpoint_bytes() -> None:
    with _service() as svc, _clients(svc) as (alice, bob):
        _, model_id = _model(alice)
        for seq_id, name in ((1, "first"), (2, "second")):
            saved = alice.save_weights(model_id, seq_id, name)
            assert "error" not in alice.result(saved.json()["request_id"])
        stored = sorted((svc.data_dir / "runs").rglob("arrays.npz"))
        assert len(stored) == 2
        response = alice.http.get("/api/v1/billing/usage/checkpoints/current")
        assert response.status_code == 200, response.text
        size = sum(path.stat().st_size for path in stored)
        assert response.json() == {"effective_rate_usd_per_gigabyte_month": None, "data": [{
            "project_id": DEFAULT_PROJECT, "org_user_urn": "alice", "user_email": None, "user_name": "alice",
            "checkpoint_count": 2, "size_bytes": size, "size_gigabytes": size / 1e9,
            "estimated_monthly_cost_usd": None}]}
        assert bob.http.get("/api/v1/billing/usage/checkpoints/current").json()["data"] == []
        other_project = alice.http.get("/api/v1/billing/usage/checkpoints/current", params={"project_id": "p-1"})
        assert other_project.json()["data"] == []


# ---- persistence -------------------------------------------------------------------------------------
def test_budgets_and_usage_survive_a_restart_and_a_new_service_on_the_same_data_dir(tmp_path: Path) -> None:
    with _service({"alice": 10}, data_dir=tmp_path) as svc, _clients(svc) as (alice, _):
        _, model_id = _model(alice)
        _train(alice, model_id, 1)
        svc.restart()
        assert svc.billing.account("alice").budget == 7
        _, model_id = _model(alice)
        _train(alice, model_id, 1)
        before = _usage(alice)
    assert json.loads((tmp_path / "billing.json").read_text())["accounts"]["alice"] == {"budget": 4, "used": 6}
    # the configured opening balance is for users the data directory does not know yet
    with _service({"alice": 10, "bob": 1}, data_dir=tmp_path) as svc, _clients(svc) as (alice, _):
        assert (svc.billing.account("alice").budget, svc.billing.account("alice").used) == (4, 6)
        assert svc.billing.account("bob").budget == 1
        assert _usage(alice) == before and _tokens_by_kind(before) == {"training": 6}


def test_a_stopped_service_writes_no_more_billing() -> None:
    svc = LocalService(zero_work=True, billing={"alice": 1}).start()
    data_dir = svc.data_dir
    svc.stop()  # its temporary data directory is removed
    assert svc.billing.top_up("alice", 5).budget == 6
    assert not data_dir.exists()


# ---- CLI -----------------------------------------------------------------------------------------------
def test_cli_billing_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with _service({"alice": 1}) as svc, _clients(svc) as (alice, _):
        shell = ["--url", svc.base_url, "--api-key", KEYS["alice"]]  # the admin's key (the first user)
        _, model_id = _model(alice)
        _train(alice, model_id, 1)
        assert main(["local", "billing", "show", *shell]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["accounts"] == [{"user": "alice", "budget": -2, "used": 3, "unlimited": False, "spent": True}]
        assert main(["local", "billing", "top-up", *shell, "alice", "10"]) == 0
        assert json.loads(capsys.readouterr().out)["budget"] == 8
        _train(alice, model_id, 2)
        assert main(["local", "billing", "set", *shell, "alice", "unlimited"]) == 0
        assert json.loads(capsys.readouterr().out)["unlimited"] is True
        assert main(["local", "billing", "show", *shell, "alice"]) == 0
        assert json.loads(capsys.readouterr().out)["used"] == 6
        assert main(["local", "billing", "events", *shell, "--user", "alice", "--limit", "1"]) == 0
        events = json.loads(capsys.readouterr().out)["events"]
        assert [(e["user"], e["kind"], e["tokens"], e["model_id"]) for e in events] == [
            ("alice", "training", 3, model_id)]
        assert main(["local", "billing", "top-up", *shell, "alice", "-1"]) == 1
        assert "top-up" in capsys.readouterr().err


def test_cli_serve_budgets(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_budgets(["alice=100", "*=5", "bob=unlimited"]) == {"alice": 100, "*": 5, "bob": None}
    with pytest.raises(SystemExit):
        parse_budgets(["alice"])
    assert main(["local", "serve", "--port", "0", "--zero-work", "--budget", "alice=-1"]) == 2
    assert "budget" in capsys.readouterr().err


# ---- the official 0.38 SDK ---------------------------------------------------------------------------
_OFFICIAL_SCRIPT = r'''
import json, logging, sys, threading, time
import httpx, tinker
from tinker import types

warnings = []
class Capture(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("tinker").addHandler(Capture(logging.WARNING))

base_url, key = sys.argv[1], sys.argv[2]
out = {}
service = tinker.ServiceClient()
training = service.create_lora_training_client(base_model="tiny-byte", rank=4).result(timeout=30)
datum = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]),
                    loss_fn_inputs={"target_tokens": [2, 3, 4]})
training.forward_backward([datum], "cross_entropy").result(timeout=30)  # spends the budget of 2

def top_up():
    time.sleep(1.0)  # while the SDK is paused on the 402
    httpx.post(f"{base_url}/local/v1/billing/users/default/top-up", json={"tokens": 100},
               headers={"X-API-Key": key}, timeout=10).raise_for_status()

started = time.monotonic()
threading.Thread(target=top_up).start()
training.forward_backward([datum], "cross_entropy").result(timeout=60)
out["paused_s"] = time.monotonic() - started
out["pause_warnings"] = [w for w in warnings if "billing" in w]
training.save_state("after-top-up").result(timeout=30)

admin = tinker.AdminClient()
hour = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime())
end = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(time.time() + 3600))
usage = admin.get_billing_usage(hour, end).result(timeout=30)
out["usage"] = [(e.event_info.type, e.event_info.token_count, e.base_model, e.session_id) for e in usage.data]
storage = admin.get_current_checkpoint_storage_usage().result(timeout=30)
out["storage"] = [(i.checkpoint_count, i.size_bytes) for i in storage.data]

httpx.put(f"{base_url}/local/v1/billing/users/default", json={"budget": 0}, headers={"X-API-Key": key},
          timeout=10).raise_for_status()
started = time.monotonic()
try:
    training.forward_backward([datum], "cross_entropy").result(timeout=60)
    out["after_the_pause"] = "succeeded"
except Exception as error:
    out["after_the_pause"] = type(error).__name__
out["failed_after_s"] = time.monotonic() - started
print(json.dumps(out))
'''


def test_the_official_038_sdk_pauses_on_402_and_continues_after_a_top_up(tmp_path: Path) -> None:
    if not OFFICIAL_038_PYTHON.exists():
        pytest.skip(f"the official tinker==0.38.0 SDK is not installed at {OFFICIAL_038_PYTHON}")
    script = tmp_path / "official_billing.py"
    script.write_text(_OFFICIAL_SCRIPT)
    # The SDK pauses up to billing_exception_max_pause_duration_sec (client/config), retrying every 5 s.
    with LocalService(zero_work=True, long_poll_s=5.0, billing={"default": 2},
                      protocol_flags={"billing_exception_max_pause_duration_sec": 3}) as svc:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "TINKER_BASE_URL": svc.base_url,
               "TINKER_API_KEY": svc.api_key, "TINKER_TELEMETRY": "0", "NO_PROXY": "127.0.0.1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([str(OFFICIAL_038_PYTHON), str(script), svc.base_url, svc.api_key], env=env,
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert 4.0 <= out["paused_s"] < 30, out  # one 402, the SDK's 5 s pause, then accepted
        assert len(out["pause_warnings"]) == 1 and "billing: the token budget" in out["pause_warnings"][0], out
        assert svc.billing.account("default").used == 6
        assert [row[:3] for row in out["usage"]] == [["training", 6, "tiny-byte"]]
        stored = list((svc.data_dir / "runs").rglob("arrays.npz"))
        assert out["storage"] == [[1, stored[0].stat().st_size]] and len(stored) == 1
        # past the pause window the SDK gives up with its typed error
        assert out["after_the_pause"] == "BillingError" and out["failed_after_s"] < 30, out
