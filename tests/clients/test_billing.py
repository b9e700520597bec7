"""Billing over real HTTP against the local service: a 402 pauses the affected requests (announced once) while
other traffic goes on, then they succeed after a top-up or fail with BillingError once the pause runs out; the
billing reads in the REST client and ``tinker-actors billing``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

import tinker_actors as tinker
from tinker_actors.cli import main
from tinker_actors.config import BillingPauseSettings, Config, RetryPolicy, WaitWarnings
from tinker_actors.local import FaultRule, LocalService
from tinker_actors.types import BillingUsageResponse, TrainingBillingEvent

KEY = "tml-billing-key"
USER = "default"  # the one user of a single-key service
FAST_PAUSE = BillingPauseSettings(initial_delay=0.02, max_delay=0.1)


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(long_poll_s=0.5, api_key=KEY) as svc:
        yield svc


@pytest.fixture(autouse=True)
def unlimited(service: LocalService) -> Iterator[None]:
    service.faults.clear()
    service.billing.set_budget(USER, None)
    yield
    service.faults.clear()
    service.billing.set_budget(USER, None)


def config(service: LocalService, **fields: Any) -> Config:
    values: dict[str, Any] = {"api_key": KEY, "base_url": service.base_url, "telemetry_enabled": False,
                              "retry": RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=5.0),
                              "billing_pause": FAST_PAUSE, "heartbeat_interval": 0.05}
    return Config(**(values | fields))


def counts(service: LocalService, endpoint: str) -> dict[str, int]:
    return dict(service.request_counts()["endpoints"].get(endpoint, {}))


def received(service: LocalService, endpoint: str) -> int:
    return int(counts(service, endpoint).get("received", 0))


def datum(n: int = 8) -> tinker.Datum:
    tokens = list(range(1, n + 2))
    return tinker.Datum(model_input=tinker.ModelInput.from_ints(tokens[:-1]),
                        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * n})


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ---- 402: pause, other traffic, then success or a typed failure ---------------------------------------

def test_a_402_pauses_until_a_top_up_while_other_requests_go_on(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service, log_level="info")) as client:
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        rest = client.create_rest_client()
        service.billing.set_budget(USER, 0)  # spent: new training and sampling work is refused with 402
        with structlog.testing.capture_logs() as logs:
            future = training.forward_backward([datum()], "cross_entropy")
            wait_until(lambda: client._context.http.billing.paused == 1)
            time.sleep(0.5)  # several retries of the paused request
            assert not future.done()
            # Other traffic goes on meanwhile: REST reads, a new sampler, heartbeats.
            beats = received(service, "session_heartbeat")
            assert rest.list_training_runs().result(5).training_runs
            assert client.create_sampling_client(base_model="tiny-byte").result().sampling_session_id
            wait_until(lambda: received(service, "session_heartbeat") >= beats + 3)
            service.billing.top_up(USER, 1_000_000)
            output = future.result(10)
        assert output.loss_fn_outputs
    events = [entry["event"] for entry in logs if entry["event"].startswith("billing.")]
    assert events == ["billing.paused", "billing.resumed"]  # one announcement, not one per retry
    paused = next(entry for entry in logs if entry["event"] == "billing.paused")
    assert paused["log_level"] == "warning" and "budget" in paused["reason"] and "is spent" in paused["reason"]


def test_a_pause_that_runs_out_fails_with_billing_error(service: LocalService) -> None:
    settings = FAST_PAUSE.model_copy(update={"max_pause": 0.6})
    with tinker.ServiceClient(config=config(service, billing_pause=settings)) as client:
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        service.billing.set_budget(USER, 0)
        before = received(service, "forward_backward")
        with structlog.testing.capture_logs() as logs:
            started = time.monotonic()
            with pytest.raises(tinker.BillingError) as caught:
                training.forward_backward([datum()], "cross_entropy").result(30)
            took = time.monotonic() - started
        assert 0.6 <= took < 5.0
        error = caught.value
        assert error.status_code == 402 and error.category == "user" and isinstance(error, tinker.APIStatusError)
        assert "paused" in str(error) and "is spent" in str(error) and KEY not in str(error)
        assert received(service, "forward_backward") - before >= 4  # sent again with backoff, not given up at once
        assert [e["event"] for e in logs if e["event"].startswith("billing.")] == ["billing.paused", "billing.gave_up"]


def test_402_answers_from_a_fault_are_waited_out_n_times(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as client:
        rule = service.faults.add(FaultRule(endpoint="list_training_runs", status=402, times=5))
        runs = client.create_rest_client().list_training_runs().result(10)
        assert runs.cursor is not None and service.faults.fired(rule) == 5
        # A 402 waited out is not a retry: the call still has every retry (and its whole deadline) left.
        assert client.stats()["GET training_runs"].retries == 0


def test_the_pause_does_not_use_up_the_deadline_of_a_blocking_call(service: LocalService) -> None:
    """create_lora_training_client waits at most no_progress_timeout + timeouts.default (here 1 s), except
    while its request is paused on a 402: a 2 s pause then success is not a TinkerTimeoutError."""
    slow = BillingPauseSettings(initial_delay=0.1, max_delay=0.1)
    with tinker.ServiceClient(config=config(service, billing_pause=slow, no_progress_timeout=0.5,
                                            timeouts=tinker.config.Timeouts(default=0.5))) as client:
        service.faults.add(FaultRule(endpoint="create_model", status=402, times=20))
        started = time.monotonic()
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        assert training.model_id and time.monotonic() - started >= 1.5


def test_a_sample_paused_longer_than_its_progress_timeout_goes_on_after_the_top_up(service: LocalService) -> None:
    """A sample's no-progress bound (RetryConfig.progress_timeout, here 0.5 s) is held while a 402 pauses it: the
    billing pause bounds it instead, so a 2 s pause then a top-up is a sample, not a NoProgressError."""
    with tinker.ServiceClient(config=config(service, log_level="info")) as client:
        sampler = client.create_sampling_client(
            base_model="tiny-byte", retry_config=tinker.RetryConfig(progress_timeout=0.5)).result()
        service.billing.set_budget(USER, 0)
        with structlog.testing.capture_logs() as logs:
            future = sampler.sample(tinker.ModelInput.from_ints([1, 2, 3]), 1,
                                    tinker.SamplingParams(max_tokens=3, temperature=1.0))
            wait_until(lambda: client._context.http.billing.paused == 1)
            time.sleep(2.0)  # four times the progress timeout
            assert not future.done()
            service.billing.top_up(USER, 1_000_000)
            assert len(future.result(10).sequences[0].tokens) == 3
        assert [e["event"] for e in logs if e["event"].startswith("billing.")] == ["billing.paused", "billing.resumed"]


def test_heartbeats_and_telemetry_never_pause(service: LocalService) -> None:
    with tinker.ServiceClient(config=config(service)) as client:
        assert client.session_id
        service.faults.add(FaultRule(endpoint="session_heartbeat", status=402))
        before = received(service, "session_heartbeat")
        with structlog.testing.capture_logs() as logs:
            time.sleep(0.6)
        assert received(service, "session_heartbeat") - before >= 5  # one per interval, as ever
        assert client._context.http.billing.paused == 0
        assert not [entry for entry in logs if entry["event"].startswith("billing.")]


def test_the_server_flag_bounds_the_pause_unless_the_config_does(service: LocalService) -> None:
    service.protocol.set_flags({"billing_exception_max_pause_duration_sec": 1})
    try:
        with tinker.ServiceClient(config=config(service)) as client:
            assert client._context.http.billing.max_pause == 1
        settings = FAST_PAUSE.model_copy(update={"max_pause": 7.5})
        with tinker.ServiceClient(config=config(service, billing_pause=settings)) as client:
            assert client._context.http.billing.max_pause == 7.5
    finally:
        service.protocol.clear_flags()
    with tinker.ServiceClient(config=config(service)) as client:
        assert client._context.http.billing.max_pause == 3600  # the official default


def test_reminders_at_most_once_per_repeat_interval(service: LocalService) -> None:
    settings = FAST_PAUSE.model_copy(update={"max_pause": 1.2})
    with tinker.ServiceClient(config=config(service, billing_pause=settings,
                                            wait_warnings=WaitWarnings(first_after=0.2, repeat_after=0.5))) as client:
        service.faults.add(FaultRule(endpoint="list_training_runs", status=402))
        rest = client.create_rest_client()
        with structlog.testing.capture_logs() as logs:
            futures = [rest.list_training_runs() for _ in range(5)]  # five requests paused in one incident
            for future in futures:
                with pytest.raises(tinker.BillingError):
                    future.result(10)
    events = [entry["event"] for entry in logs if entry["event"].startswith("billing.")]
    assert events[0] == "billing.paused" and events.count("billing.paused") == 1
    assert 1 <= events.count("billing.still_paused") <= 2 and events.count("billing.gave_up") == 1


# ---- billing reads -----------------------------------------------------------------------------------

def hour_window() -> tuple[str, str]:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"), \
        (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def trained(service: LocalService) -> Iterator[str]:
    """A session that trained 8 tokens and saved a checkpoint, in project proj-billing."""
    with tinker.ServiceClient(config=config(service), project_id="proj-billing") as client:
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        training.forward_backward([datum(8)], "cross_entropy").result(30)
        training.save_state("billing-ckpt").result(30)
        yield client.session_id


def test_billing_usage_and_checkpoint_storage(service: LocalService, trained: str) -> None:
    start, end = hour_window()
    rest = tinker.RestClient(base_url=service.base_url, api_key=KEY)
    usage = rest.get_billing_usage(start, end).result(10)
    mine = [event for event in usage.data if event.session_id == trained]
    assert [(type(e.event_info), e.event_info.token_count) for e in mine
            if isinstance(e.event_info, TrainingBillingEvent)] == [(TrainingBillingEvent, 8)]
    assert mine[0].project_id == "proj-billing" and trained in usage.sessions
    storage = rest.get_current_checkpoint_storage_usage(project_id="proj-billing").result(10)
    assert [(item.project_id, item.checkpoint_count) for item in storage.data] == [("proj-billing", 1)]
    assert storage.data[0].size_bytes > 0

    async def main_async() -> BillingUsageResponse:
        assert (await rest.get_current_checkpoint_storage_usage_async()).data
        return await rest.get_billing_usage(datetime.fromisoformat(start), datetime.fromisoformat(end))

    assert asyncio.run(main_async()).data


def test_bad_usage_windows_fail_before_anything_is_sent(service: LocalService) -> None:
    rest = tinker.RestClient(base_url=service.base_url, api_key=KEY)
    before = received(service, "billing_usage_events")
    for start, end in (("yesterday", "today"), ("2026-07-13T00:00:00", "2026-07-14T00:00:00"),
                       ("2026-07-14T00:00:00Z", "2026-07-13T00:00:00Z")):
        with pytest.raises(tinker.InvalidInputError):
            rest.get_billing_usage(start, end)
    assert received(service, "billing_usage_events") == before


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def test_the_billing_commands(service: LocalService, trained: str, tmp_path: Path) -> None:
    start, end = hour_window()
    where = ("--base-url", service.base_url, "--api-key", KEY)
    before = received(service, "create_session")

    code, text = run_cli("billing", "usage", start, end, "-f", "json", *where)
    assert code == 0
    body = json.loads(text)
    assert set(body) == {"data", "sessions", "cost_data_through"}
    row = next(r for r in body["data"] if r["session_id"] == trained and r["event_info"]["type"] == "training")
    assert row["event_info"]["token_count"] == 8 and row["estimated_cost_usd"] is None

    code, text = run_cli("billing", "usage", start, end, *where)
    lines = text.splitlines()
    assert code == 0 and lines[0].endswith("hourly usage row(s)")
    columns = lines[1].split("\t")
    assert "event_info" not in columns and {"type", "token_count", "session_id"} <= set(columns)
    training_row = next(dict(zip(columns, line.split("\t"), strict=True)) for line in lines[2:]
                        if trained in line and "\ttraining\t" in line)
    assert training_row["estimated_cost_usd"] == "null"  # applies, unknown
    assert training_row["effective_rate_usd_per_gigabyte_month"] == ""  # does not apply to tokens

    usage_csv, sessions_csv = tmp_path / "usage.csv", tmp_path / "sessions.csv"
    code, _ = run_cli("billing", "usage", start, end, "--csv", str(usage_csv), "--sessions-csv", str(sessions_csv),
                      *where)
    assert code == 0
    assert any(r["session_id"] == trained and r["token_count"] == "8" for r in csv.DictReader(usage_csv.open()))
    assert trained in [r["session_id"] for r in csv.DictReader(sessions_csv.open())]

    code, text = run_cli("billing", "checkpoint-storage", "--project-id", "proj-billing", "-f", "json", *where)
    body = json.loads(text)
    assert code == 0 and body["effective_rate_usd_per_gigabyte_month"] is None
    assert [(r["project_id"], r["checkpoint_count"]) for r in body["data"]] == [("proj-billing", 1)]
    code, text = run_cli("billing", "checkpoint-storage", *where)
    assert code == 0 and text.splitlines()[0] == "Current checkpoint storage" and "proj-billing" in text
    assert received(service, "create_session") == before  # the commands made no session


def test_a_billing_command_error_is_one_line(service: LocalService, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["billing", "usage", "2026-07-14T00:00:00Z", "2026-07-13T00:00:00Z",
                 "--base-url", service.base_url, "--api-key", KEY])
    assert code == 1 and capsys.readouterr().err.startswith("Error: get_billing_usage: ending_before")


def test_concurrent_futures_are_not_held_up_by_an_unrelated_pause(service: LocalService) -> None:
    """Requests answered 402 wait in their own coroutines: a burst of reads finishes while one is paused."""
    with tinker.ServiceClient(config=config(service)) as client:
        rest = client.create_rest_client()
        service.faults.add(FaultRule(endpoint="list_user_checkpoints", status=402))
        paused = rest.list_user_checkpoints()
        wait_until(lambda: client._context.http.billing.paused == 1)
        reads = [rest.list_training_runs() for _ in range(20)]
        done, _ = concurrent.futures.wait([r.future() for r in reads], timeout=10)
        assert len(done) == 20 and not paused.done()
        service.faults.clear()
        assert paused.result(10).checkpoints is not None
