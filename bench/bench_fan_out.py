"""Rollouts per second and samples in flight when rollouts fan out to worker processes.

The zero-work local service (``LocalService(zero_work=True)``: every sample answered at once with a canned
result) runs in its own process. A rollout submits ``--samples-per-rollout`` samples at once and waits
for them. Each setup runs ``--rollouts`` rollouts after a warm-up (workers started, one SamplingClient each):

* ``threads``: one process, ``W x --rollouts-per-worker`` threads (the baseline: no fan-out);
* ``process``: ``tinker_actors.fanout.rollouts`` over a ``spawn`` process pool of W workers (an executor
  runs one task per process at a time);
* ``ray``: a ``RolloutPool`` of W Ray actors, ``--rollouts-per-worker`` rollouts in flight each, on a local
  Ray (127.0.0.1 only; needs the ``ray`` extra, skipped without it).

Samples in flight are measured, not configured: (sum of rollout durations / wall time) x samples per rollout.

``--env-cpu-ms N`` gives each rollout an environment: N ms of pure-Python CPU work after its samples (a reward,
a simulator step, a tokenization), holding the GIL as such code does. That is where fan-out pays: threads of
one process share one GIL, worker processes each have their own.

    .venv/bin/python bench/bench_fan_out.py                     # about two minutes
    .venv/bin/python bench/bench_fan_out.py --env-cpu-ms 20     # rollouts with CPU work of their own
    .venv/bin/python bench/bench_fan_out.py --workers 1,2 --rollouts 100 --modes threads,process
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import tinker_actors as tinker
from tinker_actors.fanout import Rollout, rollouts, spawn_pool

BASE_MODEL = "tiny-byte"
PROMPT = tinker.ModelInput.from_ints([72, 101, 108, 108, 111])
PARAMS = tinker.SamplingParams(max_tokens=4)


@dataclass(frozen=True)
class RolloutTask:
    samples: int
    env_cpu_ms: float = 0.0


def bench_rollout(sampler: tinker.SamplingClient, task: RolloutTask) -> int:
    """One rollout: ``task.samples`` samples at once, wait for all (what a group of an RL step does), then the
    environment's CPU work, if any."""
    futures = [sampler.sample(PROMPT, 1, PARAMS) for _ in range(task.samples)]
    for future in futures:
        future.result(timeout=120)
    if task.env_cpu_ms:
        busy_until = time.thread_time() + task.env_cpu_ms / 1000  # this thread's CPU, not the wall clock
        while time.thread_time() < busy_until:
            pass
    return task.samples


# ---- the service, in its own process ------------------------------------------------------------

def serve() -> None:
    from tinker_actors.local import LocalService

    with LocalService(zero_work=True, long_poll_s=5.0, session_timeout_s=3600.0,
                      protocol_flags={"sample_join_sampling_session": True}) as service:
        print(json.dumps({"url": service.base_url, "api_key": service.api_key}), flush=True)
        sys.stdin.read()  # the parent closes our stdin to stop us


# ---- measuring ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    mode: str
    workers: int
    rollouts_per_s: float
    samples_per_s: float
    rollouts_in_flight: float
    samples_in_flight: float
    worker_rss_mb: float  # resident memory of one worker process (the trainer's, for threads), mean


def rss_mb(pids: Iterable[int]) -> float:
    sizes = []
    for pid in set(pids):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        sizes += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")]
    return sum(sizes) / len(sizes) if sizes else float("nan")


def measure(mode: str, workers: int, samples: int, start: Callable[[], Iterable[Rollout[RolloutTask, int]]],
            count: int) -> Figures:
    """Time ``start()`` (which submits ``count`` rollouts) until the last of them is read."""
    started = time.perf_counter()
    done = start()
    busy = 0.0
    finished = 0
    pids: set[int] = set()
    for rollout in done:
        rollout.result()  # a failed rollout fails the benchmark
        busy += rollout.seconds
        finished += 1
        pids.add(rollout.worker if mode == "process" and rollout.worker is not None else os.getpid())
    wall = time.perf_counter() - started
    assert finished == count, (finished, count)
    return Figures(mode, workers, count / wall, count * samples / wall, busy / wall, busy / wall * samples,
                   rss_mb(pids))


def executor_run(executor: concurrent.futures.Executor, sampler: tinker.SamplingClient, args: argparse.Namespace,
                 workers: int, mode: str) -> Figures:
    task = RolloutTask(args.samples_per_rollout, args.env_cpu_ms)
    warm = list(rollouts(executor, bench_rollout, sampler, [task] * (2 * workers), timeout=300))
    assert all(r.ok for r in warm), [r.error for r in warm if not r.ok]
    tasks = [task] * args.rollouts
    return measure(mode, workers, args.samples_per_rollout,
                   lambda: rollouts(executor, bench_rollout, sampler, tasks, timeout=300), args.rollouts)


def ray_run(sampler: tinker.SamplingClient, args: argparse.Namespace, workers: int, api_key: str) -> Figures:
    from tinker_actors.fanout.ray_pool import RolloutPool

    with RolloutPool(bench_rollout, sampler, workers=workers, rollouts_per_worker=args.rollouts_per_worker,
                     env_vars={"TINKER_API_KEY": api_key}) as pool:
        task = RolloutTask(args.samples_per_rollout, args.env_cpu_ms)
        for _ in range(2 * workers * args.rollouts_per_worker):
            pool.submit(task)
        assert all(r.ok for r in pool.as_completed(timeout=300))

        def start() -> Iterable[Rollout[RolloutTask, int]]:
            for _ in range(args.rollouts):
                pool.submit(task)
            return pool.as_completed(timeout=300)

        figures = measure("ray", workers, args.samples_per_rollout, start, args.rollouts)
        import ray

        pids = [pid for pid, _ in ray.get([worker.ready.remote() for worker in pool.workers])]
        return dataclasses.replace(figures, worker_rss_mb=rss_mb(pids))


def run_mode(mode: str, service: tinker.ServiceClient, args: argparse.Namespace, api_key: str,
             report: Callable[[Figures], None]) -> None:
    sampler = service.create_sampling_client_future(base_model=BASE_MODEL).result(60)
    for workers in args.workers:
        if mode == "threads":
            with concurrent.futures.ThreadPoolExecutor(workers * args.rollouts_per_worker) as threads:
                report(executor_run(threads, sampler, args, workers, "threads"))
        elif mode == "process":
            with spawn_pool(workers) as pool:
                report(executor_run(pool, sampler, args, workers, "process"))
        else:
            report(ray_run(sampler, args, workers, api_key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--modes", default="threads,process,ray")
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--samples-per-rollout", type=int, default=4)
    parser.add_argument("--rollouts-per-worker", type=int, default=4, help="threads and Ray; executors run 1")
    parser.add_argument("--env-cpu-ms", type=float, default=0.0,
                        help="CPU milliseconds of environment work per rollout, after its samples (default 0)")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    args.workers = [int(w) for w in args.workers.split(",")]
    modes = args.modes.split(",")
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout is not None and server.stdin is not None
    endpoint = json.loads(server.stdout.readline())
    os.environ["TINKER_API_KEY"] = endpoint["api_key"]  # spawned workers copy it; it is in no task
    ray = None
    try:
        if "ray" in modes:
            try:
                from tinker_actors.fanout.ray_pool import init_local_ray

                ray = init_local_ray(2)
            except ImportError as missing:
                print(f"ray: skipped ({missing})")
                modes.remove("ray")
        print(f"{'setup':<10} {'workers':>7} {'rollouts/s':>11} {'samples/s':>10} {'rollouts in flight':>19} "
              f"{'samples in flight':>18} {'RSS/worker MB':>14}")

        def report(figures: Figures) -> None:
            print(f"{figures.mode:<10} {figures.workers:>7} {figures.rollouts_per_s:>11.1f} "
                  f"{figures.samples_per_s:>10.0f} {figures.rollouts_in_flight:>19.1f} "
                  f"{figures.samples_in_flight:>18.1f} {figures.worker_rss_mb:>14.0f}", flush=True)

        with tinker.ServiceClient(base_url=endpoint["url"], api_key=endpoint["api_key"]) as service:
            for mode in modes:
                run_mode(mode, service, args, endpoint["api_key"], report)
    finally:
        if ray is not None:
            ray.shutdown()
        server.stdin.close()
        server.wait(30)


if __name__ == "__main__":
    main()
