"""Rollouts over a concurrent.futures.Executor: a spawn process pool against the local service over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import tinker_actors as tinker
from tests.fanout.ray_rollouts import rollout
from tinker_actors.fanout import rollouts, spawn_pool
from tinker_actors.fanout.seq_blocks import BLOCK
from tinker_actors.local import LocalService

KEY = "tml-EXECUTOR-TESTS-77b1d0"


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(api_key=KEY, long_poll_s=0.5, protocol_flags={"sample_join_sampling_session": True}) as svc:
        yield svc


def test_rollouts_over_a_spawn_pool_stream_back_with_one_clone_per_worker_process(
        service: LocalService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)  # the workers copy this environment when they start: no key in a task
    with tinker.ServiceClient(base_url=service.base_url, api_key=KEY) as trainer, spawn_pool(2) as pool:
        sampler = trainer.create_sampling_client_future(base_model="tiny-byte").result(60)
        joins_before = service.stats.snapshot()["endpoints"].get("join_sampling_session", {}).get("received", 0)
        tasks = [{"n": n} for n in range(6)] + [{"n": 6, "bad": True}]
        done = list(rollouts(pool, rollout, sampler, tasks, policy_version=5, timeout=120))
        trainer.close()
    assert sorted(r.task["n"] for r in done) == list(range(7))
    good = [r for r in done if r.task["n"] < 6]
    assert all(r.ok and r.policy_version == 5 for r in good), [r.error for r in good]
    pids = {r.result()["pid"] for r in good}
    assert os.getpid() not in pids and pids == {r.worker for r in good}
    # One SamplingClient per worker process (not per task): one join each, distinct blocks, no seq id twice.
    joins = service.stats.snapshot()["endpoints"]["join_sampling_session"]["received"] - joins_before
    assert joins == len(pids)
    seen = [e["seq_id"] for e in service.stats.snapshot()["sequenced"] if e["id"] == sampler.sampling_session_id]
    assert len(seen) == len(set(seen)) and len({seq_id // BLOCK for seq_id in seen}) == len(pids)
    # The service's refusal crossed the process boundary as the same typed error.
    refused = next(r for r in done if r.task["n"] == 6)
    assert isinstance(refused.error, tinker.BadRequestError), refused.error
    with pytest.raises(tinker.BadRequestError):
        refused.result()


def test_a_fork_pool_is_refused() -> None:
    with pytest.raises(tinker.InvalidInputError, match="fork"):
        spawn_pool(2, method="fork")  # type: ignore[arg-type]
    with pytest.raises(tinker.InvalidInputError):
        spawn_pool(0)


def test_a_worker_keeps_clients_of_the_latest_handles_and_closes_older_ones_once_idle(
        service: LocalService) -> None:
    import concurrent.futures

    from tinker_actors.fanout import executors

    with tinker.ServiceClient(base_url=service.base_url, api_key=KEY) as trainer, \
            concurrent.futures.ThreadPoolExecutor(2) as threads:
        samplers = [trainer.create_sampling_client_future(base_model="tiny-byte").result(60)
                    for _ in range(executors.KEPT_SAMPLERS + 2)]
        kept_clients = []
        for version, sampler in enumerate(samplers):  # a new weights version each time, as in an RL run
            done = list(rollouts(threads, rollout, sampler, [{"n": n} for n in range(3)], policy_version=version,
                                 timeout=60))
            assert all(r.ok for r in done), [r.error for r in done]
            kept_clients.append(executors._samplers[sampler.get_sampler_handle()].sampler)
        assert list(executors._samplers)[-executors.KEPT_SAMPLERS:] == [
            s.get_sampler_handle() for s in samplers[-executors.KEPT_SAMPLERS:]]
        assert len(executors._samplers) == executors.KEPT_SAMPLERS
        # The two oldest clones were closed (their actors stopped): they refuse to sample, the others still do.
        for closed in kept_clients[:2]:
            with pytest.raises(tinker.ClientStoppedError):
                closed.sample(tinker.ModelInput.from_ints([1]), 1, tinker.SamplingParams(max_tokens=1)).result(10)
        assert kept_clients[-1].sample(tinker.ModelInput.from_ints([1]), 1,
                                       tinker.SamplingParams(max_tokens=1)).result(30).sequences


def test_without_ray_installed_the_ray_pool_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from tinker_actors.fanout import MissingExtraError
    from tinker_actors.fanout.ray_pool import RolloutPool

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed: `import ray` fails
    with pytest.raises(MissingExtraError, match=r"tinker-actors\[ray\]") as raised:
        RolloutPool(rollout, "a-handle")
    assert isinstance(raised.value, ImportError)
