"""Rollout workers on a local Ray cluster (127.0.0.1 only) against the local service over real HTTP.

One Ray cluster (2 CPUs, no dashboard, no usage stats), one local service and one pool of 2 workers serve
the whole module; the tests run in order and each publishes newer weights than the one before. Workers take
TINKER_API_KEY from the job's environment (``runtime_env``), never from a handle or a pickle.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (the optional extra 'ray'; `make test` installs it)")

import tinker_actors as tinker  # noqa: E402
from tests.fanout.ray_rollouts import PARAMS, rollout  # noqa: E402
from tinker_actors.fanout import Rollout, RolloutWorkerDiedError, rollouts  # noqa: E402
from tinker_actors.fanout.ray_pool import RayExecutor, RolloutPool, init_local_ray  # noqa: E402
from tinker_actors.fanout.seq_blocks import BLOCK  # noqa: E402
from tinker_actors.local import LocalService  # noqa: E402
from tinker_actors.testing import FaultHelper  # noqa: E402

KEY = "tml-RAY-TESTS-4f0c2a9e"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
WAIT_S = 60.0  # generous: worker processes start slowly on a loaded machine


@pytest.fixture(scope="module")
def service() -> Iterator[LocalService]:
    with LocalService(api_key=KEY, long_poll_s=0.5, protocol_flags={"sample_join_sampling_session": True}) as svc:
        yield svc


@pytest.fixture(scope="module")
def cluster(service: LocalService) -> Iterator[ModuleType]:
    path = os.pathsep.join([str(REPO), str(EXAMPLES)])  # the rollout functions' modules, as in this process
    started = init_local_ray(2, runtime_env={"env_vars": {"TINKER_API_KEY": KEY, "PYTHONPATH": path}})
    try:
        yield started
    finally:
        started.shutdown()


@pytest.fixture(scope="module")
def trainer(service: LocalService) -> Iterator[tinker.ServiceClient]:
    with tinker.ServiceClient(base_url=service.base_url, api_key=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def pool(cluster: ModuleType, trainer: tinker.ServiceClient) -> Iterator[RolloutPool[dict[str, Any], dict[str, Any]]]:
    first = trainer.create_sampling_client_future(base_model="tiny-byte").result(60)
    with RolloutPool(rollout, first, workers=2, rollouts_per_worker=4, max_restarts=3) as started:
        yield started


def finish(pool: RolloutPool[Any, Any], tasks: list[dict[str, Any]]) -> list[Rollout[Any, Any]]:
    for task in tasks:
        pool.submit(task)
    return list(pool.as_completed(timeout=WAIT_S))


def seq_ids_of(service: LocalService, sampling_session_id: str) -> list[int]:
    return [entry["seq_id"] for entry in service.stats.snapshot()["sequenced"] if entry["id"] == sampling_session_id]


def test_the_cluster_listens_on_loopback_only(cluster: ModuleType) -> None:
    assert {node["NodeManagerAddress"] for node in cluster.nodes()} == {"127.0.0.1"}


def test_workers_in_other_processes_sample_through_handles_in_blocks_of_their_own(
        service: LocalService, trainer: tinker.ServiceClient, pool: RolloutPool[Any, Any]) -> None:
    sampler = trainer.create_sampling_client_future(base_model="tiny-byte").result(60)
    version = pool.policy_version + 1
    pool.publish(sampler, version)
    assert sampler.sample(tinker.ModelInput.from_ints([1, 2]), 1, PARAMS).result(30)
    done = finish(pool, [{"n": n} for n in range(8)])
    assert len(done) == 8 and all(r.ok for r in done), [r.error for r in done]
    pids = {r.result()["pid"] for r in done}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, neither of them this one
    assert {r.worker for r in done} == {0, 1} and {r.policy_version for r in done} == {version}
    assert {r.result()["session"] for r in done} == {sampler.sampling_session_id}
    seen = seq_ids_of(service, sampler.sampling_session_id)
    assert len(seen) == 9 and len(set(seen)) == 9  # nobody reused a seq id
    blocks = {seq_id // BLOCK for seq_id in seen}
    assert len(blocks) == 3 and 0 in blocks  # this process is client 0; each worker joined for a block of its own


def test_publish_switches_the_workers_and_each_rollout_carries_its_version(
        trainer: tinker.ServiceClient, pool: RolloutPool[Any, Any]) -> None:
    training = trainer.create_lora_training_client_future(base_model="tiny-byte", rank=2, seed=0).result(60)
    paths = [training.save_weights_for_sampler(f"v{i}").result(30).path for i in range(2)]
    old, new = pool.policy_version + 1, pool.policy_version + 2
    pool.publish(trainer.create_sampling_client_future(model_path=paths[0]).result(60), old)
    for n in range(2):
        pool.submit({"n": n, "sleep": 3.0})  # one per worker, started on the old weights
    time.sleep(1.5)
    pool.publish(trainer.create_sampling_client_future(model_path=paths[1]).result(60), new)
    for n in range(2, 6):
        pool.submit({"n": n})  # submitted after publish returned: the new weights
    done = {r.result()["n"]: r for r in pool.as_completed(timeout=WAIT_S)}
    assert sorted(done) == list(range(6))
    for n, finished in done.items():
        expected = old if n < 2 else new
        assert finished.policy_version == expected, (n, finished.policy_version)
        assert finished.result()["model_path"] == paths[0 if expected == old else 1]
    assert ray.get([worker.ready.remote() for worker in pool.workers])[0][1] == new


def wait_until_back(worker: Any) -> tuple[int, int]:
    """(pid, weights version) of a worker, once Ray restarted it (it answers 'unavailable' meanwhile)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            answer: tuple[int, int] = ray.get(worker.ready.remote(), timeout=WAIT_S)
            return answer
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_killed_worker_fails_its_rollouts_with_a_typed_error_and_ray_restarts_it(
        pool: RolloutPool[Any, Any]) -> None:
    old_pid, _ = ray.get(pool.workers[0].ready.remote())
    pool.submit({"n": 0, "sleep": 3.0})  # worker 0 (least loaded, lowest index)
    pool.submit({"n": 1, "sleep": 3.0})  # worker 1
    time.sleep(1.0)
    ray.kill(pool.workers[0], no_restart=False)
    done = {r.task["n"]: r for r in pool.as_completed(timeout=WAIT_S)}
    died = done[0].error
    assert isinstance(died, RolloutWorkerDiedError) and died.retryable and died.worker == 0 and died.task == {
        "n": 0, "sleep": 3.0}
    assert done[1].ok and done[1].worker == 1  # the other worker went on
    with pytest.raises(RolloutWorkerDiedError):
        done[0].result()
    # Ray brings worker 0 back, on the latest published weights; the pool gives it rollouts again.
    new_pid, version = wait_until_back(pool.workers[0])
    assert new_pid != old_pid and version == pool.policy_version
    deadline = time.monotonic() + WAIT_S
    workers: set[int | None] = set()
    while workers != {0, 1} and time.monotonic() < deadline:
        workers |= {r.worker for r in finish(pool, [{"n": n, "sleep": 0.2} for n in range(4)]) if r.ok}
    assert workers == {0, 1}


def test_a_429_seen_by_one_worker_holds_back_the_others(service: LocalService, pool: RolloutPool[Any, Any]) -> None:
    faults = FaultHelper(service)
    rule = faults.rate_limit("asample", retry_after=2.0, times=1)
    pool.submit({"n": 0})  # worker 0 meets the 429
    deadline = time.monotonic() + WAIT_S
    while faults.fired(rule) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert faults.fired(rule) == 1
    time.sleep(0.5)  # the workers exchange backoffs every 0.1 s
    pool.submit({"n": 1})  # worker 1, which never saw a 429 itself
    done = {r.task["n"]: r for r in pool.as_completed(timeout=WAIT_S)}
    assert done[0].ok and done[1].ok and {done[0].worker, done[1].worker} == {0, 1}
    # Without the shared backoff worker 1 would sample at once (a few ms); it held back for the rest of it.
    assert done[1].result()["sample_seconds"] >= 1.0, done[1].result()


def test_rollouts_over_a_ray_executor(trainer: tinker.ServiceClient, cluster: ModuleType) -> None:
    sampler = trainer.create_sampling_client_future(base_model="tiny-byte").result(60)
    with RayExecutor(num_cpus=1) as executor:  # the idle workers Ray started with the cluster
        done = list(rollouts(executor, rollout, sampler, [{"n": n} for n in range(4)], policy_version=3,
                             timeout=WAIT_S))
    assert len(done) == 4 and all(r.ok and r.policy_version == 3 for r in done), [r.error for r in done]
    assert os.getpid() not in {r.result()["pid"] for r in done}


def load_example(name: str) -> ModuleType:
    """An example as the module the workers import too (examples/ is on their PYTHONPATH: see ``cluster``)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def test_an_async_rl_loop_with_ray_workers_learns(service: LocalService, trainer: tinker.ServiceClient,
                                                  cluster: ModuleType) -> None:
    example = load_example("rl_ray")
    args = example.parse_args(["--steps", "8", "--workers", "2"])
    # The job's environment has the key already: no env_vars, so Ray can reuse the executor test's idle workers.
    summary = example.train(trainer, args)
    assert summary.rollouts >= 8 * summary.groups_per_step
    assert max(summary.lags) <= summary.max_lag and summary.versions_seen[-1] >= 6
    assert summary.last_reward > summary.first_reward + 0.05, summary


def test_env_vars_are_added_to_the_workers_runtime_env() -> None:
    from tinker_actors.fanout.ray_pool import worker_runtime_env

    assert worker_runtime_env(None, None) is None  # the job's environment
    assert worker_runtime_env(None, {"TINKER_API_KEY": "k"}) == {"env_vars": {"TINKER_API_KEY": "k"}}
    merged = worker_runtime_env({"pip": ["x"], "env_vars": {"A": "1", "B": "2"}}, {"B": "3"})
    assert merged == {"pip": ["x"], "env_vars": {"A": "1", "B": "3"}}
