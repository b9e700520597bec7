"""A SamplingClient nobody holds any more stops its actor (and so its thread) once its pending samples are done.

An RL loop that makes a sampling client per weights version must not grow a thread and a supervisor child
per step for the life of its ServiceClient (issue 14: the numbers must stay flat).
"""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import tinker_actors as tinker
from tinker_actors.clients import sampling as sampling_module
from tinker_actors.clients.sampling import RetryConfig, SamplingClient
from tinker_actors.config import Config, PollBackoff, RetryPolicy
from tinker_actors.errors import ClientStoppedError
from tinker_actors.local import LocalService
from tinker_actors.testing import FaultHelper

PROMPT = tinker.ModelInput.from_ints(list(b"ab"))
PARAMS = tinker.SamplingParams(max_tokens=2)
SETTLE_S = 10.0  # generous: the machine is shared; retiring an idle actor takes milliseconds


@pytest.fixture
def svc(service: LocalService) -> Iterator[tinker.ServiceClient]:
    service.faults.clear()
    config = Config(api_key="tml-test-key", base_url=service.base_url, telemetry_enabled=False,
                    retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05, deadline=10.0),
                    poll_backoff=PollBackoff(initial=0.01, max=0.05), no_progress_timeout=10.0)
    with tinker.ServiceClient(config=config) as client:
        yield client
    service.faults.clear()


def children(svc: tinker.ServiceClient) -> int:
    return len(svc.clients_supervisor.which_children())


def settles(condition: Callable[[], bool], timeout: float = SETTLE_S) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def new_sampler(svc: tinker.ServiceClient, retry_config: RetryConfig | None = None) -> SamplingClient:
    return svc.create_sampling_client_future(base_model="tiny-byte", retry_config=retry_config).result()


def baseline(svc: tinker.ServiceClient) -> tuple[int, int]:
    """Threads and clients-supervisor children once the pools a first client starts are up."""
    warm = new_sampler(svc)
    warm.sample(PROMPT, 1, PARAMS).result(timeout=30)
    del warm
    assert settles(lambda: children(svc) == 0)
    return threading.active_count(), children(svc)


def test_two_hundred_dropped_clients_leave_no_thread_and_no_child_behind(svc: tinker.ServiceClient) -> None:
    threads, kids = baseline(svc)
    batch = 20
    for _ in range(200 // batch):
        futures = [svc.create_sampling_client_future(base_model="tiny-byte") for _ in range(batch)]
        samplers: list[SamplingClient] = [future.result() for future in futures]
        del futures
        samples = [sampler.sample(PROMPT, 1, PARAMS) for sampler in samplers]
        assert all(sample.result(timeout=30).sequences for sample in samples)
        assert children(svc) <= kids + batch
        del samplers, samples
        # Bounded while the loop runs: each batch is gone before the next one starts.
        assert settles(lambda: children(svc) == kids), f"{children(svc)} children after dropping a batch"
    assert settles(lambda: threading.active_count() <= threads + 2), (
        f"{threading.active_count()} threads after 200 dropped clients, {threads} before")
    # nor an entry each in the table unpickled handles find their ServiceClient by
    assert settles(lambda: not [key for key in sampling_module._owners if key[0] == svc.config.base_url])


def test_a_dropped_clients_pending_samples_still_resolve(svc: tinker.ServiceClient, service: LocalService) -> None:
    _, kids = baseline(svc)
    FaultHelper(service).delay("asample", 0.5, times=3)
    # One sample on the wire at a time: the last of the three waits in the actor's queue when the handle goes.
    sampler = new_sampler(svc, RetryConfig(max_connections=1))
    pending = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(3)]
    del sampler
    gc.collect()
    time.sleep(0.2)
    assert not any(future.done() for future in pending)
    assert children(svc) == kids + 1  # its actor is still there: its samples need it
    results = [future.result(timeout=30) for future in pending]  # none failed spuriously
    assert all(result.sequences for result in results)
    assert settles(lambda: children(svc) == kids)


def test_a_dropped_client_whose_actor_restarts_still_goes(svc: tinker.ServiceClient, service: LocalService) -> None:
    _, kids = baseline(svc)
    FaultHelper(service).delay("asample", 1.0, times=1)
    sampler = new_sampler(svc)
    actor = sampler.actor
    pending = sampler.sample(PROMPT, 1, PARAMS)
    del sampler
    gc.collect()
    old = actor.resolve(2.0)
    old.proxy().crash(RuntimeError("test crash"))  # restarted by its supervisor (TRANSIENT)
    with pytest.raises(ClientStoppedError):  # a crash fails what was in flight (retryable), as before
        pending.result(timeout=30)
    # The new incarnation knows its handle is gone, and nothing of it is pending: it retires.
    assert settles(lambda: children(svc) == kids)


def test_close_still_stops_the_actor_at_once_and_the_drop_then_does_nothing(
        svc: tinker.ServiceClient, caplog: pytest.LogCaptureFixture) -> None:
    _, kids = baseline(svc)
    sampler = new_sampler(svc)
    sampler.sample(PROMPT, 1, PARAMS).result(timeout=30)
    assert children(svc) == kids + 1
    sampler.close()
    assert children(svc) == kids
    with pytest.raises(ClientStoppedError):
        sampler.sample(PROMPT, 1, PARAMS).result(timeout=30)
    del sampler
    gc.collect()
    svc.clients_supervisor.sync(timeout=10.0)
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def test_copies_clones_and_saved_weights_clients_go_when_dropped(svc: tinker.ServiceClient) -> None:
    _, kids = baseline(svc)
    training = svc.create_lora_training_client_future(base_model="tiny-byte", rank=4).result()
    kids += 1  # the training client's actor stays
    sampler = new_sampler(svc)
    samplers = [sampler, copy.deepcopy(sampler),  # a pickle round trip that re-attaches through its owner
                SamplingClient.from_sampler_handle(sampler.get_sampler_handle()),
                training.save_weights_and_get_sampling_client_future().result()]
    assert children(svc) == kids + len(samplers)
    assert all(each.sample(PROMPT, 1, PARAMS).result(timeout=30).sequences for each in samplers)
    survivor = samplers.pop()
    del sampler, samplers
    assert settles(lambda: children(svc) == kids + 1)
    assert survivor.sample(PROMPT, 1, PARAMS).result(timeout=30).sequences  # the others' going left it alone
    del survivor
    assert settles(lambda: children(svc) == kids)


EXIT_SCRIPT = textwrap.dedent("""
    import gc
    import tinker_actors as tinker
    from tinker_actors.config import Config
    from tinker_actors.local import LocalService
    from tinker_actors.testing import FaultHelper

    prompt, params = tinker.ModelInput.from_ints([97, 98]), tinker.SamplingParams(max_tokens=2)
    local = LocalService(long_poll_s=0.5).start()
    svc = tinker.ServiceClient(config=Config(api_key="tml-test-key", base_url=local.base_url,
                                             telemetry_enabled=False))
    for _ in range(5):
        svc.create_sampling_client_future(base_model="tiny-byte").result().sample(prompt, 1, params).result(timeout=30)
    gc.collect()
    kept = [svc.create_sampling_client_future(base_model="tiny-byte").result() for _ in range(3)]
    dropped = [svc.create_sampling_client_future(base_model="tiny-byte").result() for _ in range(3)]
    FaultHelper(local).delay("asample", 2.0)
    pending = [each.sample(prompt, 1, params) for each in kept + dropped]  # still in flight at exit
    del dropped  # dropped right before the interpreter ends, with the ServiceClient never closed
    print("done", flush=True)
""")


def test_dropping_clients_and_exiting_logs_nothing() -> None:
    finished = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "done"
    assert finished.stderr == "", finished.stderr
