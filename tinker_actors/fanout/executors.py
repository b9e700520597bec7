"""Rollouts over any ``concurrent.futures.Executor``: a ``spawn`` / ``forkserver`` process pool, a thread pool,
:class:`~tinker_actors.fanout.ray_pool.RayExecutor`, or Dask's executor.

The trainer keeps its ServiceClient and TrainingClient; what goes to the workers is the sampler's handle
(a string without credentials) and the rollout function. Each worker process builds one SamplingClient
per handle and keeps it for every later task (one clone, one ``join_sampling_session``, per process and
sampler, however many tasks it runs; the clients of all but the latest ``KEPT_SAMPLERS`` handles are closed
once idle), and authenticates with its own environment's credentials.

    with spawn_pool(4) as pool:
        for rollout in rollouts(pool, play_episode, sampler, episodes):
            use(rollout.result())            # in order of completion; raises what the rollout raised

``play_episode(sampler, task)`` must be importable by the workers (a module-level function; in a script,
guard the entry point with ``if __name__ == "__main__":``, as ``spawn`` requires).
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from tinker_actors.clients.sampling import SamplingClient
from tinker_actors.errors import InvalidInputError, TinkerTimeoutError
from tinker_actors.futures import APIFuture

__all__ = ["KEPT_SAMPLERS", "Rollout", "rollouts", "run_rollout", "spawn_pool"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Rollout(Generic[T, R]):
    """One finished rollout: its task, and its value or the error it ended with.

    ``policy_version`` is the version of the weights that produced it (as the trainer numbered them when it
    published them); ``worker`` says where it ran (a worker index for Ray, a process id for executors).
    """

    task: T
    value: R | None
    error: BaseException | None
    policy_version: int | None
    worker: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> R:
        """The rollout's value, or raise what it raised (a dead worker: ``RolloutWorkerDiedError``)."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None is a value a rollout may return


def spawn_pool(workers: int, *, method: Literal["spawn", "forkserver"] = "spawn",
               max_tasks_per_child: int | None = None) -> concurrent.futures.ProcessPoolExecutor:
    """A process pool whose workers are started with ``spawn`` or ``forkserver``, never ``fork``.

    Workers take the credentials of their environment, which they copy when they start: set
    ``TINKER_API_KEY`` (or the credential command) before the pool starts its processes.
    """
    if method not in ("spawn", "forkserver"):
        raise InvalidInputError(f"spawn_pool starts workers with 'spawn' or 'forkserver', not {method!r}: the "
                                "threads of a running client do not survive fork()")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"spawn_pool needs at least one worker, got {workers!r}")
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                                  max_tasks_per_child=max_tasks_per_child)


# ---- the worker side ----------------------------------------------------------------------------

KEPT_SAMPLERS = 4  # per worker process: the latest handles' clients (a new weights version is a new handle)


@dataclass(slots=True)
class _Kept:
    sampler: SamplingClient
    users: int = 0  # rollouts running with it: a client is closed only once none is


_samplers: collections.OrderedDict[str, _Kept] = collections.OrderedDict()
_samplers_lock = threading.Lock()


def _acquire(handle: str) -> _Kept:
    """This process's client for ``handle`` (built on first use, then the same one: one clone per process and
    handle), counted as in use. Clients of handles not used lately are closed once idle."""
    retired: list[SamplingClient] = []
    with _samplers_lock:
        kept = _samplers.get(handle)
        if kept is None:
            kept = _samplers[handle] = _Kept(SamplingClient.from_sampler_handle(handle))
        _samplers.move_to_end(handle)
        kept.users += 1
        for old_handle in list(_samplers)[:-KEPT_SAMPLERS]:
            if _samplers[old_handle].users == 0:
                retired.append(_samplers.pop(old_handle).sampler)
    for sampler in retired:
        sampler.close()
    return kept


def _release(handle: str, kept: _Kept) -> None:
    with _samplers_lock:
        kept.users -= 1
        retire = kept.users == 0 and handle in list(_samplers)[:-KEPT_SAMPLERS]  # older than the kept ones
        if retire:
            del _samplers[handle]
    if retire:
        kept.sampler.close()


def run_rollout(rollout: Callable[[SamplingClient, T], R], handle: str, task: T) -> tuple[R, int, float]:
    """What an executor runs for one task: ``rollout(sampler, task)``, with the worker's pid and the time it took."""
    started = time.monotonic()
    kept = _acquire(handle)
    try:
        value = rollout(kept.sampler, task)
    finally:
        _release(handle, kept)
    return value, os.getpid(), time.monotonic() - started


# ---- the trainer side ---------------------------------------------------------------------------

def rollouts(executor: concurrent.futures.Executor, rollout: Callable[[SamplingClient, T], R],
             sampler: SamplingClient | str, tasks: Iterable[T], *, policy_version: int | None = None,
             timeout: float | None = None) -> Iterator[Rollout[T, R]]:
    """Run ``rollout(sampler, task)`` for every task on ``executor``; yield each as it finishes (completion order).

    ``sampler`` is a SamplingClient or its handle. A rollout that raises is yielded with its ``error`` (the
    others go on). ``timeout``: the most seconds to wait for the next rollout to finish; past it,
    :class:`~tinker_actors.errors.TinkerTimeoutError` (the rollouts still running are cancelled if they have
    not started). Leaving the loop early cancels the rollouts that have not started.
    """
    if isinstance(sampler, APIFuture):  # what a creation call returns (protocol 0.38): the client is its result
        sampler = sampler.result()
    handle = sampler.get_sampler_handle() if isinstance(sampler, SamplingClient) else sampler
    submitted = time.monotonic()
    futures: dict[concurrent.futures.Future[tuple[R, int, float]], T] = {
        executor.submit(run_rollout, rollout, handle, task): task for task in tasks}
    try:
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=timeout,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            if not done:
                raise TinkerTimeoutError(f"no rollout finished in {timeout} s ({len(pending)} still running)")
            for future in done:
                task = futures[future]
                error = future.exception()
                if error is not None:
                    yield Rollout(task, None, error, policy_version, None, time.monotonic() - submitted)
                else:
                    value, pid, seconds = future.result()
                    yield Rollout(task, value, None, policy_version, pid, seconds)
    finally:
        for future in futures:
            future.cancel()

