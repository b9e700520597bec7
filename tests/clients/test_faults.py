"""Every fault ends with a correct result or a typed error, quickly; nothing hangs; order is kept."""

from __future__ import annotations

import threading
import time

import pytest

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.local import FaultAction, FaultRule, LocalService

TEXT = list(b"fault tolerant actors never leave a caller hanging. " * 2)


def test_5xx_burst_is_retried_to_success(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="forward_backward", status=503, times=2))
    assert training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30).metrics["loss:sum"] > 0


def test_future_that_never_completes_fails_typed_without_a_timeout(client: tinker.ServiceClient,
                                                                    service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    object.__setattr__(client._context, "poll", type(client._context.poll)(
        initial_delay=0.01, max_delay=0.05, no_progress_timeout=1.0, pending_timeout=1.5, request_timeout=5.0))
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE, times=1))
    started = time.monotonic()
    with pytest.raises(tinker.NoProgressError):
        training.forward_backward([datum(TEXT[:20])], "cross_entropy").result()
    assert time.monotonic() - started < 10


def test_caller_timeout_is_typed_and_the_request_goes_on(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", status=408, times=20))  # pending for a while
    future = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    with pytest.raises(tinker.TinkerTimeoutError):
        future.result(timeout=0.05)
    assert future.result(30).metrics["loss:sum"] > 0  # the timeout only stopped waiting (tests/clients/test_waits.py)


def test_request_failed_answer_is_typed(client: tinker.ServiceClient) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    too_long = datum(list(range(200)) * 10)  # longer than the model's context window
    with pytest.raises(tinker.RequestFailedError) as info:
        training.forward_backward([too_long], "cross_entropy").result(30)
    assert info.value.category == "user"


def test_malformed_poll_answer_is_typed(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", action=FaultAction.MALFORMED_JSON, times=1))
    with pytest.raises(tinker.APIResponseValidationError):
        training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)


def test_sample_429_backpressure_then_success(client: tinker.ServiceClient, service: LocalService) -> None:
    sampler = client.create_sampling_client(base_model="tiny-byte",
                                            retry_config=tinker.RetryConfig(rate_limit_backoff=0.05)).result()
    service.faults.add(FaultRule(endpoint="asample", status=429, times=3))
    response = sampler.sample(tinker.ModelInput.from_ints(TEXT[:4]), 1, tinker.SamplingParams(max_tokens=2)).result(30)
    assert len(response.sequences) == 1


def test_server_down_is_reported_in_seconds() -> None:
    from tinker_actors.config import Config, RetryPolicy

    config = Config(api_key="tml-k", base_url="http://127.0.0.1:9", retry=RetryPolicy(max_retries=1, base_delay=0.01,
                                                                                 deadline=2.0))
    started = time.monotonic()
    with pytest.raises(tinker.APIConnectionError):
        tinker.ServiceClient(config=config)
    assert time.monotonic() - started < 10


def test_order_is_kept_under_concurrency_and_optim_never_duplicated(client: tinker.ServiceClient,
                                                                    service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    executed_before = service.stats.snapshot()["endpoints"].get("optim_step", {}).get("executed", 0)
    service.faults.add(FaultRule(endpoint="optim_step", action=FaultAction.DROP_AFTER, times=1))
    futures: list[tinker.APIFuture[object]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            with lock:  # a pair submitted back to back by one thread at a time
                futures.append(training.forward_backward([datum(TEXT[:12])], "cross_entropy"))
                futures.append(training.optim_step(tinker.AdamParams()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = []
    for future in futures:
        try:
            future.result(30)
            outcomes.append("ok")
        except tinker.TinkerError as error:
            outcomes.append(type(error).__name__)
    assert outcomes.count("ok") >= len(futures) - 1  # the dropped answer is retried (same seq: deduplicated)
    requests = service.stats.snapshot()["endpoints"]["optim_step"]
    assert requests["executed"] - executed_before == 12  # never applied twice, though one POST was sent twice


def test_close_fails_pending_futures(service: LocalService, protocol: str) -> None:
    from tinker_actors.config import Config

    svc = tinker.ServiceClient(config=Config(api_key="tml-k", base_url=service.base_url, protocol=protocol))
    training = svc.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE, times=1))
    future = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    time.sleep(0.2)
    svc.close()
    with pytest.raises(tinker.ClientStoppedError):
        future.result(10)
    service.faults.clear()


def test_actor_crash_is_repaired_and_accepted_requests_still_resolve(client: tinker.ServiceClient,
                                                                    service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", action=FaultAction.DELAY, delay_s=0.5, times=1))
    accepted = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    deadline = time.monotonic() + 5
    while not training.ledger.accepted_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    old = training.actor.resolve(1.0)
    with pytest.raises(RuntimeError):
        old.proxy().crash(RuntimeError("injected crash")).get(timeout=2)
    assert accepted.result(30).metrics["loss:sum"] > 0  # polled on, across the crash
    after = training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(30)  # the restarted actor serves
    assert after.metrics["loss:sum"] > 0
    assert training.actor.resolve(1.0) != old


def test_polls_back_off_even_when_the_server_does_not_long_poll() -> None:
    """The official SDK re-polls ~1,000 times a second against such a server; we stay at a few per second."""
    from tinker_actors.config import Config

    with LocalService(long_poll_s=0.0) as quick:
        quick.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE))
        config = Config(api_key="tml-k", base_url=quick.base_url, telemetry_enabled=False)
        with tinker.ServiceClient(config=config) as svc:
            training = svc.create_lora_training_client("tiny-byte", rank=2).result()
            future = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
            time.sleep(0.3)  # let the backoff reach its cap
            before = quick.stats.snapshot()["endpoints"]["retrieve_future"]["received"]
            time.sleep(2.0)
            polls = quick.stats.snapshot()["endpoints"]["retrieve_future"]["received"] - before
            future.cancel()
        assert 1 <= polls <= 4, f"{polls} polls in 2 s"
