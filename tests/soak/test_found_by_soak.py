"""What the soak found, pinned by fast, deterministic tests (these run in the normal suite, not only when soaking).

A client's call queued in its actor's mailbox *behind* a crash was dropped with the dead actor (pykka discards
the tells left in a stopped actor's inbox; only asks get ``ActorDeadError``): its caller's future never
resolved. In the soak (``bench/bench_soak.py``, actor kills every ~30 s) this showed as a step whose
``forward_backward`` and ``optim_step`` hung. Fixed in ``supervisors.inbox``: what is queued when an actor ends
goes to its ``on_undelivered``, where the client actors fail the call with ``CrashedBeforeSendError`` (never
sent, safe to send again), and the restarted actor serves the calls made after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tinker_actors as tinker
from tinker_actors.clients.ledger import TrainingLedger
from tinker_actors.clients.sampling import SamplingClientActor
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import ClientStoppedError, CrashedBeforeSendError, NotSentError
from tinker_actors.futures import APIFuture
from tinker_actors.local import LocalService

TEXT = [104, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]  # "hello world"


@pytest.fixture
def client() -> Iterator[tinker.ServiceClient]:
    with LocalService(long_poll_s=0.3) as service, tinker.ServiceClient(config=Config(
            api_key="tml-soak-test", base_url=service.base_url, telemetry_enabled=False,
            retry=RetryPolicy(max_retries=3, base_delay=0.05, max_delay=0.2, deadline=8.0),
            poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=8.0)) as client:
        yield client


def _training(client: tinker.ServiceClient) -> tinker.TrainingClient:
    created: Any = client.create_lora_training_client(base_model="tiny-byte", rank=2)
    training: tinker.TrainingClient = created.result(timeout=30) if isinstance(created, APIFuture) else created
    return training


def test_a_call_queued_behind_a_crash_of_the_training_actor_is_answered(
        client: tinker.ServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    training = _training(client)
    batch = [tinker.Datum(model_input=tinker.ModelInput.from_ints(TEXT[:-1]),
                          loss_fn_inputs={"target_tokens": TEXT[1:], "weights": [1.0] * (len(TEXT) - 1)})]
    # Hold the actor inside its handling of the first call, so that what is told next queues behind it.
    handling, release = threading.Event(), threading.Event()
    assign = TrainingLedger.assign_op_id

    def held_once(ledger: TrainingLedger) -> int:
        if not handling.is_set():
            handling.set()
            release.wait(10)
        return assign(ledger)

    monkeypatch.setattr(TrainingLedger, "assign_op_id", held_once)
    first = training.forward_backward(batch, "cross_entropy")
    assert handling.wait(10)
    crash = training.actor.resolve(2.0).proxy().crash(RuntimeError("crashed on purpose"))  # queued 2nd
    second = training.optim_step(tinker.AdamParams(learning_rate=1e-3))                   # queued 3rd
    release.set()
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        crash.get(timeout=10)
    assert first.exception(timeout=30) is None or isinstance(first.exception(), NotSentError)  # handled: it ends
    # The second call never reached a handler: it ends at once, typed as never sent, not hanging.
    error = second.exception(timeout=5)
    assert isinstance(error, CrashedBeforeSendError) and "crashed on purpose" in str(error.cause), error
    # The restarted actor serves what comes next.
    assert training.forward_backward(batch, "cross_entropy").result(timeout=30).loss_fn_outputs


def test_a_sample_queued_behind_a_crash_of_the_sampling_actor_is_answered(
        client: tinker.ServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler: Any = client.create_sampling_client(base_model="tiny-byte")
    sampler = sampler.result(timeout=30) if isinstance(sampler, APIFuture) else sampler
    handling, release = threading.Event(), threading.Event()
    start = SamplingClientActor._start

    def held_once(actor: SamplingClientActor, op: Any) -> None:
        if not handling.is_set():
            handling.set()
            release.wait(10)
        start(actor, op)

    monkeypatch.setattr(SamplingClientActor, "_start", held_once)
    params = tinker.SamplingParams(max_tokens=4, temperature=1.0)
    prompt = tinker.ModelInput.from_ints(TEXT)
    first = sampler.sample(prompt, 1, params)
    assert handling.wait(10)
    crash = sampler.actor.resolve(2.0).proxy().crash(RuntimeError("crashed on purpose"))
    second = sampler.sample(prompt, 1, params)
    release.set()
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        crash.get(timeout=10)
    assert first.exception(timeout=30) is None or isinstance(first.exception(), ClientStoppedError)
    error = second.exception(timeout=5)
    assert isinstance(error, CrashedBeforeSendError), error
    assert len(sampler.sample(prompt, 1, params).result(timeout=30).sequences) == 1  # the restarted actor samples
