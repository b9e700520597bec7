"""Crash a TrainingClientActor at each point of a request's life; what every caller sees is typed and final.

- before send (queued behind another request): the request fails with NotSentError and is never sent;
- after send, while polling: the restarted actor's requests and the accepted one all resolve with results;
- while results are resolving: every future still resolves exactly once;
- the supervisor gives up (too many crashes): pending futures fail typed, later calls fail fast.
"""

from __future__ import annotations

import contextlib
import random
import time

import pytest

import tinker_actors as tinker
from tests.clients.conftest import datum
from tinker_actors.local import FaultAction, FaultRule, LocalService

TEXT = list(b"let it crash, on purpose, and rebuild clean state. " * 2)


def crash(training: tinker.TrainingClient) -> None:
    ref = training.actor.resolve(2.0)
    with pytest.raises(RuntimeError):
        ref.proxy().crash(RuntimeError("injected crash")).get(timeout=2)


def wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def executed(service: LocalService, endpoint: str) -> int:
    return int(service.stats.snapshot()["endpoints"].get(endpoint, {}).get("executed", 0))


def test_crash_before_send_fails_not_sent_and_nothing_is_sent_twice(client: tinker.ServiceClient,
                                                                    service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    # The first request's POST is held for 1 s, so the optim_step behind it is still waiting for its turn.
    service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.DELAY, delay_s=1.0, times=1))
    optim_before = executed(service, "optim_step")
    first = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
    queued = training.optim_step(tinker.AdamParams())
    time.sleep(0.2)
    crash(training)
    with pytest.raises(tinker.NotSentError) as info:
        queued.result(10)
    assert isinstance(info.value, tinker.ActorCrashedError) and info.value.sent is False
    assert first.result(30).metrics["loss:sum"] > 0  # it was already on the wire: it completes
    after = training.optim_step(tinker.AdamParams()).result(30)  # the restarted actor continues the seq ids
    assert after is not None
    assert executed(service, "optim_step") == optim_before + 1  # the NotSent one never reached the server


def test_crash_while_polling_keeps_accepted_requests(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    service.faults.add(FaultRule(endpoint="retrieve_future", action=FaultAction.DELAY, delay_s=0.4, times=3))
    futures = [training.forward_backward([datum(TEXT[i:i + 16])], "cross_entropy") for i in range(3)]
    wait_for(lambda: len(training.ledger.accepted_requests()) >= 1)
    crash(training)
    results = [future.result(30) for future in futures if not future.done() or future.exception(0) is None]
    assert all(result.metrics["loss:sum"] > 0 for result in results)
    for future in futures:  # each ended with a result or NotSent (if it had not left yet), never a hang
        assert future.done()
        error = future.exception(0)
        assert error is None or isinstance(error, tinker.NotSentError)


def test_random_kills_during_a_training_loop(client: tinker.ServiceClient, service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    rng = random.Random(7)
    optim_before = executed(service, "optim_step")
    outcomes: dict[str, int] = {}
    sent_optims = 0
    kill_steps = set(rng.sample(range(11), 3))  # within the intensity (3 restarts in 5 s)
    for step in range(12):
        fwd_bwd = training.forward_backward([datum(TEXT[:24])], "cross_entropy")
        optim = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
        if step in kill_steps:
            with contextlib.suppress(Exception):
                crash(training)
        for future in (fwd_bwd, optim):
            try:
                future.result(30)
                outcomes["ok"] = outcomes.get("ok", 0) + 1
                sent_optims += future is optim
            except tinker.NotSentError:
                outcomes["not_sent"] = outcomes.get("not_sent", 0) + 1
    assert outcomes.get("ok", 0) >= 12
    # Every optim_step that reported success was applied exactly once; NotSent ones never were.
    assert executed(service, "optim_step") == optim_before + sent_optims


def test_supervisor_gives_up_and_every_caller_gets_a_typed_error(service: LocalService, protocol: str) -> None:
    from tinker_actors.config import Config

    svc = tinker.ServiceClient(config=Config(api_key="tml-k", base_url=service.base_url, telemetry_enabled=False,
                                             protocol=protocol))
    try:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        service.faults.add(FaultRule(endpoint="forward_backward", action=FaultAction.NEVER_COMPLETE, times=1))
        pending = training.forward_backward([datum(TEXT[:20])], "cross_entropy")
        wait_for(lambda: len(training.ledger.accepted_requests()) >= 1)
        for _ in range(6):  # more than the intensity (3 restarts in 5 s): the service supervisor gives up
            try:
                crash(training)
            except Exception:
                break
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(tinker.TinkerError):
            training.forward_backward([datum(TEXT[:20])], "cross_entropy").result(10)
        assert time.monotonic() - started < 5
        pending.cancel()
    finally:
        svc.close()
        service.faults.clear()


def test_a_training_crash_does_not_disturb_sibling_samplers(client: tinker.ServiceClient,
                                                            service: LocalService) -> None:
    training = client.create_lora_training_client("tiny-byte", rank=2).result()
    sampler = client.create_sampling_client(base_model="tiny-byte").result()  # created after: a rest_for_one sibling
    service.faults.add(FaultRule(endpoint="retrieve_future", action=FaultAction.DELAY, delay_s=0.5, times=4,
                                 request_type="Sample"))
    samples = [sampler.sample(tinker.ModelInput.from_ints(TEXT[:4]), 1, tinker.SamplingParams(max_tokens=2))
               for _ in range(4)]
    time.sleep(0.1)
    sampler_actor = sampler.actor.resolve(1.0)
    crash(training)
    assert all(sample.result(30).sequences for sample in samples)
    assert sampler.actor.resolve(1.0) == sampler_actor  # not restarted


def test_after_giving_up_the_service_client_can_make_new_clients(service: LocalService, protocol: str) -> None:
    from tinker_actors.config import Config

    with tinker.ServiceClient(config=Config(api_key="tml-k", base_url=service.base_url, telemetry_enabled=False,
                                            protocol=protocol)) as svc:
        training = svc.create_lora_training_client("tiny-byte", rank=2).result()
        for _ in range(6):
            try:
                crash(training)
            except Exception:
                break
            time.sleep(0.05)
        with pytest.raises(tinker.ClientStoppedError):
            training.forward([datum(TEXT[:20])], "cross_entropy").result(10)
        fresh = svc.create_lora_training_client("tiny-byte", rank=2).result()
        assert fresh.forward([datum(TEXT[:20])], "cross_entropy").result(30).metrics["loss:sum"] > 0
