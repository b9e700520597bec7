"""No silent and no endless waits (FEATURES L5, A3, S3; docs/concepts/failures.md).

For each way a server can misbehave, a plain ``.result()`` ends with a typed error within the bound it
promises, and a wait without progress logs one ``wait.stalled`` warning (request type, request id, how long,
the last answer, when it gives up), never a flood. Bounds are configured small here; the defaults are
documented in docs/concepts/failures.md. Also: ``result(timeout)`` only stops waiting, ``cancel()`` and
dropping the last APIFuture stop the polling, and an idle sampling client never times out.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
import structlog

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.config import Config, PollBackoff, RetryPolicy, WaitWarnings
from tinker_actors.futures import PollSettings
from tinker_actors.local import FaultAction, FaultRule, LocalService
from tinker_actors.waits import StallWatch, WatchSettings

TEXT = list(b"a wait that makes no progress says so, once, and then ends. " * 2)
PROMPT = tinker.ModelInput.from_ints(TEXT[:6])
FIRST_WARNING = 0.5  # WaitWarnings.first_after in these tests (30 s by default)
SLACK = 3.0  # how late a bound may end on a loaded machine
Line = MutableMapping[str, Any]  # one captured log event


def config_for(service: LocalService, **overrides: Any) -> Config:
    settings: dict[str, Any] = dict(
        api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False,
        retry=RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, deadline=5.0),
        poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=1.5, pending_timeout=60.0,
        wait_warnings=WaitWarnings(first_after=FIRST_WARNING, repeat_after=60.0))
    settings.update(overrides)
    return Config(**settings)


@pytest.fixture
def make_client(service: LocalService, protocol: str) -> Iterator[Callable[..., tinker.ServiceClient]]:
    made: list[tinker.ServiceClient] = []
    service.faults.clear()

    def make(**overrides: Any) -> tinker.ServiceClient:
        made.append(tinker.ServiceClient(config=config_for(service, protocol=protocol, **overrides)))
        return made[-1]

    yield make
    service.faults.clear()
    for client in made:
        client.close()


def stalled(logs: list[Line]) -> list[Line]:
    return [entry for entry in logs if entry["event"] == "wait.stalled"]


def timed(call: Callable[[], object], error: type[BaseException] | tuple[type[BaseException], ...]
          ) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(error) as info:
        call()
    return time.monotonic() - started, info.value


def polls(service: LocalService) -> int:
    counts: dict[str, int] = service.stats.snapshot()["endpoints"].get("retrieve_future", {})
    return counts.get("received", 0)


def assert_one_warning(logs: list[Line], request_type: str, last_answer: str) -> Line:
    lines = stalled(logs)
    assert len(lines) == 1, lines  # once, not once per poll or per retry
    line = lines[0]
    assert line["log_level"] == "warning"
    assert line["request_type"] == request_type and line["last_answer"] == last_answer
    assert line["request_id"] and line["waited"] >= FIRST_WARNING * 0.9
    assert line["gives_up_in"] is not None and isinstance(line["gives_up_at"], str)
    return line


# ---- the stall watch itself ---------------------------------------------------------------------------

def test_watch_warns_once_then_once_per_condition_per_interval() -> None:
    settings = WatchSettings(first_after=0.2, repeat_after=3.0)

    async def main() -> list[Line]:
        with structlog.testing.capture_logs() as logs:
            watch = StallWatch("ForwardBackward", settings, request_id="req-1")
            watch.answer("HTTP 500", status=500)
            await asyncio.sleep(0.6)
            assert len(stalled(logs)) == 1  # at 0.2 s; not again at each check
            watch.answer("connection error")
            await asyncio.sleep(0.5)
            assert len(stalled(logs)) == 2  # a new condition is announced at the next check
            watch.answer("HTTP 500", status=500)
            await asyncio.sleep(0.5)
            assert len(stalled(logs)) == 2  # HTTP 500 was announced less than 3 s ago
            await asyncio.sleep(2.0)
            watch.close()
            await asyncio.sleep(0.3)
        return stalled(logs)

    lines = asyncio.run(main())
    assert [line["last_answer"] for line in lines] == ["HTTP 500", "connection error", "HTTP 500"]
    assert lines[0]["status"] == 500 and lines[0]["request_id"] == "req-1"


def test_many_waits_stalled_alike_log_one_line() -> None:
    settings = WatchSettings(first_after=0.1, repeat_after=60.0)  # one ServiceClient's

    async def main() -> list[Line]:
        with structlog.testing.capture_logs() as logs:
            watches = [StallWatch("ForwardBackward", settings, request_id=f"req-{i}") for i in range(20)]
            for watch in watches:
                watch.answer("HTTP 503", status=503)
            watches[0].answer("connection error")
            await asyncio.sleep(0.5)
            for watch in watches:
                watch.close()
        return stalled(logs)

    lines = asyncio.run(main())
    assert sorted(line["last_answer"] for line in lines) == ["HTTP 503", "connection error"]


def test_watch_clock_runs_only_while_waiting_and_progress_restarts_it() -> None:
    settings = WatchSettings(first_after=1.0, repeat_after=60.0)

    async def main() -> list[Line]:
        with structlog.testing.capture_logs() as logs:
            watch = StallWatch("Sample", settings, limit=1.0, start=False)
            watch.begin()
            await asyncio.sleep(0.5)
            watch.progress()  # a sample finished
            await asyncio.sleep(0.5)
            assert not stalled(logs) and watch.at() > asyncio.get_running_loop().time()
            watch.end()  # idle: no clock, no warning, no timeout
            await asyncio.sleep(1.2)
            assert not stalled(logs)
            watch.begin()  # a new wait starts the clock afresh
            assert watch.at() - asyncio.get_running_loop().time() > 0.9
            await asyncio.sleep(1.3)
            watch.end()
        return stalled(logs)

    lines = asyncio.run(main())
    assert len(lines) == 1 and lines[0]["last_answer"] == "no answer yet" and lines[0]["gives_up_in"] == 0


def test_watch_line_names_what_how_long_last_answer_and_when_it_gives_up() -> None:
    async def main() -> Line:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 10.0
        with structlog.testing.capture_logs() as logs:
            watch = StallWatch("ForwardBackward", WatchSettings(first_after=0.1), request_id="req-9",
                               gives_up_at=lambda: give_up)
            watch.answer("pending (paused_capacity)", status=408, queue_state="paused_capacity",
                         queue_state_reason="out of capacity")
            await asyncio.sleep(0.3)
            watch.close()
        return stalled(logs)[0]

    line = asyncio.run(main())
    assert line["request_type"] == "ForwardBackward" and line["request_id"] == "req-9"
    assert line["status"] == 408 and line["queue_state"] == "paused_capacity"
    assert line["queue_state_reason"] == "out of capacity"
    assert 0.1 <= line["waited"] < 1.0 and 9.0 < line["gives_up_in"] <= 10.0
    assert line["gives_up_at"].endswith("+00:00")


def test_defaults_are_the_documented_ones() -> None:
    config = Config()
    assert (config.no_progress_timeout, config.pending_timeout) == (120.0, 3600.0)
    assert (config.wait_warnings.first_after, config.wait_warnings.repeat_after) == (30.0, 300.0)
    assert tinker.RetryConfig().progress_timeout == 600.0
    poll = PollSettings.from_config(config.replace(pending_timeout=90.0, no_progress_timeout=20.0))
    assert (poll.pending_timeout, poll.no_progress_timeout, poll.warnings.first_after) == (90.0, 20.0, 30.0)


def test_watch_is_silent_when_warnings_are_not_wanted() -> None:
    settings = WatchSettings.from_config(Config(log_level="error", wait_warnings=WaitWarnings(first_after=0.1)))
    assert not settings.enabled

    async def main() -> list[Line]:
        with structlog.testing.capture_logs() as logs:
            watch = StallWatch("Sample", settings)
            await asyncio.sleep(0.3)
            watch.close()
        return stalled(logs)

    assert asyncio.run(main()) == []


# ---- every misbehaviour ends typed, within its bound, and says so once --------------------------------

def test_poll_answering_500_forever_ends_at_no_progress_timeout(make_client: Callable[..., tinker.ServiceClient],
                                                                service: LocalService) -> None:
    training = make_client().create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=500))
    with structlog.testing.capture_logs() as logs:
        elapsed, error = timed(lambda: training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(),
                               tinker.NoProgressError)
    assert 1.5 <= elapsed < 1.5 + SLACK  # no_progress_timeout: 5xx answers are not progress
    assert "no useful answer" in str(error) and "HTTP 500" in str(error)
    line = assert_one_warning(logs, "ForwardBackward", "HTTP 500")
    assert line["status"] == 500 and line["gives_up_in"] <= 1.5


@pytest.mark.parametrize("answer", ["408", "try_again"])
def test_pending_forever_ends_at_pending_timeout(make_client: Callable[..., tinker.ServiceClient],
                                                 service: LocalService, answer: str) -> None:
    # pending_timeout (2 s) is longer than no_progress_timeout (1 s): "pending" answers are useful answers.
    training = make_client(no_progress_timeout=1.0, pending_timeout=2.0).create_lora_training_client(
        "tiny-byte", rank=2).result()
    if answer == "408":
        service.faults.add(FaultRule(endpoint="retrieve_future", status=408, queue_state="paused_capacity"))
    else:
        service.faults.add(FaultRule(endpoint="retrieve_future", status=200, body={
            "type": "try_again", "request_id": "x", "queue_state": "paused_capacity",
            "queue_state_reason": "waiting for a GPU"}))
    with structlog.testing.capture_logs() as logs:
        elapsed, error = timed(lambda: training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(),
                               tinker.NoProgressError)
    assert 2.0 <= elapsed < 2.0 + SLACK
    assert "still pending" in str(error)
    line = assert_one_warning(logs, "ForwardBackward", "pending (paused_capacity)")
    assert line["queue_state"] == "paused_capacity" and line["status"] == (408 if answer == "408" else 200)
    # A server that keeps answering "pending" renews the no-progress bound: the line names pending_timeout's end.
    assert abs(line["waited"] + line["gives_up_in"] - 2.0) < 0.25, line
    if answer == "try_again":
        assert line["queue_state_reason"] == "waiting for a GPU"


def test_polls_that_never_answer_end_at_no_progress_timeout(make_client: Callable[..., tinker.ServiceClient],
                                                            service: LocalService) -> None:
    """The future is lost to us: every poll's connection drops."""
    training = make_client().create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", action=FaultAction.DROP))
    with structlog.testing.capture_logs() as logs:
        elapsed, _ = timed(lambda: training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(),
                           tinker.NoProgressError)
    assert 1.5 <= elapsed < 1.5 + SLACK
    assert_one_warning(logs, "ForwardBackward", "connection error")


def test_500_on_every_post_ends_at_the_retry_deadline(make_client: Callable[..., tinker.ServiceClient],
                                                      service: LocalService) -> None:
    client = make_client(retry=RetryPolicy(max_retries=1000, base_delay=0.05, max_delay=0.1, deadline=1.5))
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="forward_backward", status=500))
    with structlog.testing.capture_logs() as logs:
        # The last attempt's error: the 500, or (on a slow machine) the deadline passing during that attempt.
        elapsed, _ = timed(lambda: training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(),
                           (tinker.InternalServerError, tinker.APITimeoutError))
    assert 1.0 <= elapsed < 1.5 + SLACK  # RetryPolicy.deadline: no attempt or wait runs past it
    line = assert_one_warning(logs, "forward_backward", "HTTP 500")
    assert line["attempt"] > 1 and line["attempts"] == 1001 and line["gives_up_in"] <= 1.5


@pytest.mark.parametrize("when", ["before the request", "while its future is polled"])
def test_server_killed_ends_typed(when: str) -> None:
    own = LocalService(long_poll_s=0.2).start()
    try:
        config = config_for(own, retry=RetryPolicy(max_retries=1000, base_delay=0.05, max_delay=0.1, deadline=1.5))
        with tinker.ServiceClient(config=config) as client:
            training = client.create_lora_training_client("tiny-byte", rank=2).result()
            with structlog.testing.capture_logs() as logs:
                if when == "before the request":
                    own.stop()
                    elapsed, _ = timed(lambda: training.forward_backward([datum(TEXT[:20])], "cross_entropy")
                                       .result(), tinker.APIConnectionError)
                    assert elapsed < 1.5 + SLACK  # the retry deadline
                    assert_one_warning(logs, "forward_backward", "connection error")
                else:
                    own.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE))
                    future = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
                    deadline = time.monotonic() + 10
                    while polls(own) < 2 and time.monotonic() < deadline:
                        time.sleep(0.02)
                    own.stop()
                    elapsed, _ = timed(future.result, tinker.NoProgressError)
                    assert elapsed < 1.5 + SLACK  # no_progress_timeout after the last answer
                    assert_one_warning(logs, "ForwardBackward", "connection error")
    finally:
        own.stop()


def test_asample_429_forever_ends_at_progress_timeout(make_client: Callable[..., tinker.ServiceClient],
                                                      service: LocalService) -> None:
    sampler = make_client().create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
        progress_timeout=1.5, rate_limit_backoff=0.05)).result()
    service.faults.add(FaultRule(endpoint="asample", status=429))
    with structlog.testing.capture_logs() as logs:
        elapsed, error = timed(lambda: sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(),
                               tinker.NoProgressError)
    assert 1.5 <= elapsed < 1.5 + SLACK
    assert "HTTP 429" in str(error)
    line = assert_one_warning(logs, "Sample", "HTTP 429")
    assert line["sampling_session_id"] == sampler.sampling_session_id


def test_sample_future_never_completing_ends_at_progress_timeout(
        make_client: Callable[..., tinker.ServiceClient], service: LocalService) -> None:
    # pending_timeout is 60 s here: the sampling client's own bound must end it first.
    sampler = make_client().create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
        progress_timeout=1.5)).result()
    service.faults.add(FaultRule(endpoint="asample", action=FaultAction.NEVER_COMPLETE))
    with structlog.testing.capture_logs() as logs:
        elapsed, _ = timed(lambda: sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(),
                           tinker.NoProgressError)
    assert 1.5 <= elapsed < 1.5 + SLACK
    assert_one_warning(logs, "Sample", "pending")


def test_410_on_every_sample_poll_ends_after_the_retries(make_client: Callable[..., tinker.ServiceClient],
                                                         service: LocalService) -> None:
    sampler = make_client().create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
        max_retries=6, retry_delay_base=0.2, retry_delay_max=0.3)).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=410, request_type="Sample"))
    with structlog.testing.capture_logs() as logs:
        elapsed, error = timed(lambda: sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(),
                               tinker.APIStatusError)
    assert isinstance(error, tinker.APIStatusError) and error.status_code == 410
    assert elapsed < 6 * 0.3 * 1.25 + SLACK  # RetryConfig.max_retries resubmissions, each after its delay
    assert_one_warning(logs, "Sample", "HTTP 410")


def test_an_idle_sampling_client_does_not_time_out(make_client: Callable[..., tinker.ServiceClient]) -> None:
    sampler = make_client().create_sampling_client(base_model="tiny-byte", retry_config=tinker.RetryConfig(
        progress_timeout=0.5)).result()
    assert sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30).sequences
    time.sleep(1.0)  # idle for twice progress_timeout: the clock runs only while a sample is in flight
    assert sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2)).result(30).sequences


# ---- what stops a wait ---------------------------------------------------------------------------------

def test_result_timeout_keeps_the_result(make_client: Callable[..., tinker.ServiceClient],
                                         service: LocalService) -> None:
    sampler = make_client().create_sampling_client(base_model="tiny-byte").result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=408, times=20, request_type="Sample"))
    future = sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2))
    with pytest.raises(tinker.TinkerTimeoutError):
        future.result(timeout=0.05)
    assert not future.done()
    assert future.result(30).sequences  # the same future, later: the result was not lost


def wait_for_polls(service: LocalService, at_least: int) -> None:
    deadline = time.monotonic() + 10
    while polls(service) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)


def assert_polling_stopped(service: LocalService) -> None:
    time.sleep(0.3)  # a poll already on the wire may still land
    before = polls(service)
    time.sleep(1.2)  # a pending future is polled about twice a second here (0.5 s long poll)
    assert polls(service) == before


def test_cancel_stops_polling(make_client: Callable[..., tinker.ServiceClient], service: LocalService) -> None:
    training = make_client().create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE))
    future = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    wait_for_polls(service, polls(service) + 3)
    assert future.cancel()
    with pytest.raises(tinker.ClientStoppedError):
        future.result(1)
    assert_polling_stopped(service)


@pytest.mark.parametrize("kind", ["training", "sampling"])
def test_dropping_the_future_stops_polling(make_client: Callable[..., tinker.ServiceClient], service: LocalService,
                                           kind: str) -> None:
    client = make_client()
    if kind == "training":
        training = client.create_lora_training_client("tiny-byte", rank=2).result()
        service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE))
        future: tinker.APIFuture[Any] = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    else:
        sampler = client.create_sampling_client(base_model="tiny-byte").result()
        service.faults.add(FaultRule(endpoint="asample", action=FaultAction.NEVER_COMPLETE))
        future = sampler.sample(PROMPT, 1, tinker.SamplingParams(max_tokens=2))
    wait_for_polls(service, polls(service) + 3)
    with pytest.raises(tinker.TinkerTimeoutError):
        future.result(timeout=0.01)  # a timeout alone does not stop it...
    before = polls(service)
    time.sleep(1.2)  # a poll is held 0.5 s by this service's long poll
    assert polls(service) >= before + 2
    del future  # ...nobody holding it does
    gc.collect()
    assert_polling_stopped(service)


def test_a_dropped_training_request_is_still_sent(make_client: Callable[..., tinker.ServiceClient],
                                                  service: LocalService) -> None:
    training = make_client().create_lora_training_client("tiny-byte", rank=2).result()
    executed = service.stats.snapshot()["endpoints"].get("optim_step", {}).get("executed", 0)
    training.forward_backward([datum(TEXT[:20])], "cross_entropy")  # neither future is kept
    training.optim_step(tinker.AdamParams())
    gc.collect()
    training.save_state("after-dropped-step").result(30)  # sent after them, in order
    assert service.stats.snapshot()["endpoints"]["optim_step"]["executed"] == executed + 1
