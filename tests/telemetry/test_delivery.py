"""The reporter against the embedded service over real HTTP: delivery, shutdown, faults, limits."""

from __future__ import annotations

import math
import time

import pytest

import tinker_actors as tinker
from tinker_actors.config import Config
from tinker_actors.local import FaultRule, LocalService
from tinker_actors.runtime import Runtime

from .conftest import MakeConfig, session_events


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_close_flushes_everything_in_order(service: LocalService, make_config: MakeConfig) -> None:
    # The periodic flush is 30 s away: only close() can have sent these.
    client = tinker.ServiceClient(config=make_config())
    for n in range(5):
        client.telemetry.log("step", {"n": n, "loss": 0.5 / (n + 1)})
    client.close()

    events = session_events(service, client.session_id)
    assert [e["event"] for e in events] == ["SESSION_START"] + ["GENERIC_EVENT"] * 5 + ["SESSION_END"]
    assert [e["event_data"]["n"] for e in events[1:6]] == [0, 1, 2, 3, 4]
    assert [e["event_session_index"] for e in events] == list(range(7))
    assert events[0]["batch"]["sdk_version"] and events[0]["batch"]["platform"]
    assert events[-1]["duration"].startswith("0:00:")
    counters = client.telemetry.counters()
    assert counters.acknowledged == counters.emitted == 7
    assert counters.pending == 0 and counters.failed == 0 and counters.dropped == 0


def test_threshold_and_batch_size(service: LocalService, make_config: MakeConfig) -> None:
    with tinker.ServiceClient(config=make_config(batch_size=10, flush_threshold=10)) as client:
        batches_before = service.telemetry.snapshot()["batches"]
        for n in range(34):  # + SESSION_START = 35 events, so 3 full batches go without any timer
            client.telemetry.log("tick", {"n": n})
        wait_for(lambda: client.telemetry.counters().acknowledged >= 30)
        counters = client.telemetry.counters()
        assert counters.batches_acknowledged == 3 and counters.acknowledged == 30
        assert service.telemetry.snapshot()["batches"] - batches_before == 3
    counters = client.telemetry.counters()
    assert counters.acknowledged == counters.emitted == 36  # the last 5 and SESSION_END at close
    assert len(session_events(service, client.session_id)) == 36


def test_periodic_flush(service: LocalService, make_config: MakeConfig) -> None:
    with tinker.ServiceClient(config=make_config(flush_interval=0.1)) as client:
        client.telemetry.log("hello")
        wait_for(lambda: client.telemetry.counters().acknowledged == 2, timeout=3.0)
        assert [e["event"] for e in session_events(service, client.session_id)] == ["SESSION_START", "GENERIC_EVENT"]


def test_endpoint_down_retries_are_bounded_and_close_is_prompt(service: LocalService,
                                                               make_config: MakeConfig) -> None:
    service.faults.add(FaultRule(endpoint="telemetry", status=503))
    config = make_config(flush_interval=0.05, upload_attempts=3, drain_timeout=0.5)
    client = tinker.ServiceClient(config=config)
    client.telemetry.log("lost", {"n": 1})
    wait_for(lambda: client.telemetry.counters().failed >= 2)  # SESSION_START and "lost", given up
    time.sleep(0.3)  # nothing more is tried for a batch that was given up
    counters = client.telemetry.counters()
    assert counters.upload_attempts == 3 and counters.upload_failures == 3 and counters.acknowledged == 0

    client.telemetry.log("at close")
    started = time.monotonic()
    client.close()
    took = time.monotonic() - started
    assert took < config.telemetry.drain_timeout + 0.5, f"close() took {took:.2f} s"
    counters = client.telemetry.counters()
    assert counters.acknowledged == 0 and counters.pending == 0
    assert counters.failed == counters.emitted
    assert session_events(service, client.session_id) == []


def test_user_error_is_raised_at_once_while_telemetry_retries(service: LocalService,
                                                             make_config: MakeConfig) -> None:
    service.faults.add(FaultRule(endpoint="telemetry", status=503, times=3))
    service.faults.add(FaultRule(endpoint="create_sampling_session", status=400, times=1))
    with tinker.ServiceClient(config=make_config(flush_interval=0.05, upload_attempts=10)) as client:
        started = time.monotonic()
        with pytest.raises(tinker.BadRequestError):
            client.create_sampling_client(base_model="tiny-byte").result()
        assert time.monotonic() - started < 1.0
        # The three failed uploads are retried in the background until the report lands.
        wait_for(lambda: any(e.get("event_name") == "user_error" for e in session_events(service, client.session_id)))
        error_event = next(e for e in session_events(service, client.session_id) if e.get("event_name") == "user_error")
        assert error_event["severity"] == "WARNING"
        assert error_event["event_data"]["error_type"] == "BadRequestError"
        assert error_event["event_data"]["status_code"] == 400
        assert client.telemetry.counters().upload_failures == 3


def test_server_error_becomes_unhandled_exception_without_secrets(service: LocalService,
                                                                  make_config: MakeConfig) -> None:
    service.faults.add(FaultRule(endpoint="create_sampling_session", status=500, times=1,
                                 body={"error": f"boom {service.api_key}"}))
    with tinker.ServiceClient(config=make_config()) as client, pytest.raises(tinker.InternalServerError):
        client.create_sampling_client(base_model="tiny-byte").result()
    events = [e for e in session_events(service, client.session_id) if e["event"] == "UNHANDLED_EXCEPTION"]
    assert len(events) == 1
    assert events[0]["error_type"] == "InternalServerError" and events[0]["severity"] == "ERROR"
    # The creation's error arrives through its future (0.38's call style): the traceback is the request's.
    assert "Traceback" in events[0]["traceback"] and "create_sampling_session" in events[0]["traceback"]
    for event in session_events(service, client.session_id):
        assert service.api_key not in str(event)


def test_one_report_per_error_and_future_errors_are_captured(service: LocalService,
                                                             make_config: MakeConfig) -> None:
    with tinker.ServiceClient(config=make_config()) as client:
        assert client.session_id  # created on first use; errors before there is a session have none to go to
        # Refused before anything is sent: reported once, naming the call made.
        with pytest.raises(tinker.InvalidInputError):
            client.create_lora_training_client("tiny-byte", train_mlp=False, train_attn=False, train_unembed=False)
        # An error that arrives through the returned future (unknown checkpoint path).
        rest = client.create_rest_client()
        with pytest.raises(tinker.APIStatusError):
            rest.get_training_run("no-such-run").result(5.0)
    names = [e.get("event_name") or e["event"] for e in session_events(service, client.session_id)]
    assert names.count("user_error") == 2
    methods = [e["event_data"].get("method") for e in session_events(service, client.session_id)
               if e.get("event_name") == "user_error"]
    assert methods[0].endswith("create_lora_training_client")
    assert methods[1].endswith("get_training_run")


def test_a_captured_error_is_sent_at_once_not_at_the_next_periodic_flush(service: LocalService,
                                                                        make_config: MakeConfig) -> None:
    # The periodic flush is 30 s away and nobody calls flush(): only the error itself can have sent it.
    with tinker.ServiceClient(config=make_config()) as client:
        rest = client.create_rest_client()
        assert client.session_id
        with pytest.raises(tinker.NotFoundError):
            rest.get_training_run("no-such-run").result(5.0)
        raised = time.monotonic()
        wait_for(lambda: any(e.get("event_name") == "user_error" for e in session_events(service, client.session_id)),
                 timeout=10.0)
        arrived = time.monotonic() - raised
        # Before the client closes (close drains everything): the error went out by itself.
        assert arrived < 10.0


def test_users_own_exception_over_our_404_reaches_the_service_as_a_user_error(
        service: LocalService, make_config: MakeConfig) -> None:
    with tinker.ServiceClient(config=make_config()) as client:
        assert client.session_id  # created on first use; errors before there is a session have none to go to
        rest = client.create_rest_client()
        try:
            try:
                rest.get_training_run("no-such-run").result(5.0)
            except tinker.NotFoundError as missing:
                raise LookupError("the run to resume is gone") from missing
        except LookupError as error:
            client.telemetry.log_exception(error)
    user_errors = [e["event_data"] for e in session_events(service, client.session_id)
                   if e.get("event_name") == "user_error"]
    # One for the NotFoundError the call raised, one for the user's LookupError over it (either first).
    by_type = {e["error_type"]: e for e in user_errors}
    assert len(user_errors) == 2 and set(by_type) == {"NotFoundError", "LookupError"}
    assert by_type["LookupError"]["status_code"] == 404 and by_type["LookupError"]["cause_type"] == "NotFoundError"
    assert not [e for e in session_events(service, client.session_id) if e["event"] == "UNHANDLED_EXCEPTION"]


def test_queue_overflow_is_dropped_and_counted(service: LocalService, make_config: MakeConfig) -> None:
    client = tinker.ServiceClient(config=make_config(max_queue=20, flush_threshold=10_000))
    for n in range(50):
        client.telemetry.log("burst", {"n": n})
    wait_for(lambda: client.telemetry.counters().emitted - client.telemetry.counters().pending >= 31)
    counters = client.telemetry.counters()
    assert counters.dropped == 31 and counters.pending == 20  # SESSION_START + the first 19 kept
    client.close()
    counters = client.telemetry.counters()
    events = session_events(service, client.session_id)
    assert events[-1]["event"] == "SESSION_END"  # the end of a session is never the one dropped
    assert len(events) == counters.acknowledged == 21
    assert [e["event_data"]["n"] for e in events[1:20]] == list(range(19))
    assert counters.emitted == counters.acknowledged + counters.dropped + counters.failed


def test_disabled_sends_nothing(service: LocalService) -> None:
    def telemetry_requests() -> int:
        counts: int = service.request_counts()["endpoints"].get("telemetry", {}).get("received", 0)
        return counts

    before = telemetry_requests()
    config = Config.from_env({"TINKER_TELEMETRY": "0"}, api_key=service.api_key, base_url=service.base_url)
    assert config.telemetry_enabled is False
    with tinker.ServiceClient(config=config) as client:
        assert not client.telemetry.enabled
        client.telemetry.log("ignored")
        with pytest.raises(tinker.InvalidInputError):
            client.create_sampling_client().result()
        reporters = [child.child_id for child in
                     Runtime.get().root.supervisor("telemetry_reporter").which_children()]
        assert f"session-{client.session_id}" not in reporters
        with tinker.ServiceClient(api_key=service.api_key, base_url=service.base_url) as enabled:
            assert enabled.session_id  # created on first use, and its reporter with it
            # The same lookup does find a reporter for a session with telemetry on.
            reporters = [child.child_id for child in
                         Runtime.get().root.supervisor("telemetry_reporter").which_children()]
            assert f"session-{enabled.session_id}" in reporters
        with_enabled = telemetry_requests()
    assert client.telemetry.counters().emitted == 0
    assert session_events(service, client.session_id) == []
    assert telemetry_requests() == with_enabled == before + 1  # only the enabled session's one batch


def test_stats_event_carries_endpoint_latencies(service: LocalService, make_config: MakeConfig) -> None:
    with tinker.ServiceClient(config=make_config(stats_interval=0.1, flush_interval=0.1)) as client:
        client.get_server_capabilities()
        wait_for(lambda: any(e.get("event_name") == "client_stats"
                             for e in session_events(service, client.session_id)))
        local = client.stats()
    stats = [e for e in session_events(service, client.session_id) if e.get("event_name") == "client_stats"]
    endpoints = stats[0]["event_data"]["endpoints"]
    assert "telemetry" not in endpoints  # our own uploads are not reported back
    figures = endpoints["create_session"]
    assert figures["count"] == 1 and 0 < figures["p50"] <= figures["p95"] <= figures["p99"]
    assert local["create_session"].count == 1
    # An idle session sends no further stats events; the last one at close repeats nothing new.
    assert len(stats) <= 3


def test_runtime_shutdown_drains_unclosed_sessions(service: LocalService, make_config: MakeConfig) -> None:
    with Runtime.scoped(deadline=3.0):
        client = tinker.ServiceClient(config=make_config())
        client.telemetry.log("left open")
        session_id = client.session_id
        started = time.monotonic()
    assert time.monotonic() - started < 3.0
    assert [e["event"] for e in session_events(service, session_id)] == ["SESSION_START", "GENERIC_EVENT",
                                                                         "SESSION_END"]
    client._closed = True  # its runtime is gone; nothing is left to close
    client._finalizer.detach()


@pytest.mark.parametrize("failure_rate", [0.3])
def test_delivery_figures_under_a_flaky_endpoint(service: LocalService, make_config: MakeConfig,
                                                 failure_rate: float) -> None:
    service.faults.add(FaultRule(endpoint="telemetry", status=503, probability=failure_rate, seed=7))
    config = make_config(batch_size=20, flush_threshold=20, upload_attempts=4, drain_timeout=2.0)
    client = tinker.ServiceClient(config=config)
    for n in range(400):
        client.telemetry.log("flaky", {"n": n})
    client.telemetry.wait_until_settled(10.0)
    client.close()
    counters = client.telemetry.counters()
    received = session_events(service, client.session_id)
    print(f"\nfailure rate {failure_rate:.0%}: {counters}")
    assert counters.pending == 0
    assert counters.emitted == 402 == counters.acknowledged + counters.dropped + counters.failed
    # Acknowledged means received: every acknowledged event is on the server, exactly once.
    assert len(received) == len({e["event_id"] for e in received}) == counters.acknowledged
    # A batch is lost only after 4 failed tries (0.3**4 < 1 %): nearly everything arrives.
    assert counters.acknowledged >= 402 - 2 * config.telemetry.batch_size
    assert counters.upload_failures > 0
    assert math.isclose(counters.upload_failures / counters.upload_attempts, failure_rate, abs_tol=0.2)
