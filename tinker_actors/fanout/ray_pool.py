"""Rollout workers on Ray (the optional ``ray`` extra: ``pip install 'tinker-actors[ray]'``).

Ray is imported when a pool or executor is made, never by ``import tinker_actors``.

:class:`RolloutPool`: ``workers`` Ray actors, each in its own process with one SamplingClient (and so one
ServiceClient per worker process, which needs no session of its own), running ``rollout(sampler, task)``
for the tasks the trainer submits, at most ``rollouts_per_worker`` at a time each.

* **Weights**: ``pool.publish(sampler, version)`` hands every worker the new sampler's handle (a string
  without credentials); rollouts started after ``publish`` returns use it, those already running finish on
  the weights they started with. Each :class:`~tinker_actors.fanout.executors.Rollout` carries the
  ``policy_version`` that produced it.
* **Order**: results stream back as they finish (``ray.wait`` in a dispatcher thread), in order of
  completion, through :meth:`RolloutPool.as_completed`; the dispatcher refills workers while the trainer
  trains.
* **Failures**: a worker that dies (killed, out of memory, crashed) fails its in-flight rollouts with
  :class:`~tinker_actors.fanout.errors.RolloutWorkerDiedError` (retryable) while the others go on; Ray's
  ``max_restarts`` brings it back, and the restarted worker takes the latest published weights.
* **Backpressure**: a 429 seen by one worker holds back the others: each worker tells a small coordinator
  actor how long its process holds back and takes the longest one any worker reported
  (``SamplingClient.backoff_remaining`` / ``back_off``), so the workers do not each hammer the service.

Workers authenticate with their own environment (``env_vars={"TINKER_API_KEY": ...}`` here, or the
cluster's secret mechanism): the key is never in a handle, a pickle or a task (docs/guides/ray.md).

:class:`RayExecutor`: a ``concurrent.futures.Executor`` whose tasks are Ray tasks, for
:func:`~tinker_actors.fanout.executors.rollouts` and any code written for an executor.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

import structlog

from tinker_actors.clients.sampling import SamplingClient
from tinker_actors.errors import ClientStoppedError, InvalidInputError, TinkerTimeoutError
from tinker_actors.fanout.errors import MissingExtraError, RolloutWorkerDiedError
from tinker_actors.fanout.executors import Rollout
from tinker_actors.futures import APIFuture

__all__ = ["RayExecutor", "RolloutPool", "RolloutWorker", "init_local_ray"]

log = structlog.get_logger("tinker_actors.fanout")

T = TypeVar("T")
R = TypeVar("R")

_STALL_WARNING_S = 60.0  # a wait for rollouts says so this often (no wait is silent)
_DISPATCH_POLL_S = 0.02  # how long the dispatcher waits on Ray before looking at new submissions
_PROBE_INTERVAL_S = 0.5  # how often a restarting worker is asked whether it is back


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`MissingExtraError` saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise MissingExtraError("Ray is not installed: pip install 'tinker-actors[ray]' (the optional extra "
                                f"'ray'; {error})") from None
    return ray


def init_local_ray(num_cpus: int = 2, **options: Any) -> ModuleType:
    """Start Ray on this machine only: every Ray process listens on 127.0.0.1, no dashboard, no usage stats.

    For tests, examples and a single machine; a cluster is joined with ``ray.init(address=...)`` instead.
    ``options`` go to ``ray.init`` (``runtime_env``, ``object_store_memory``, ...). Returns the ``ray`` module.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray advertises (and its servers bind) the address it finds for the node unless clusters are off, in which
    # case it uses the loopback address. Read when Ray is imported: set before, and patched if it already was.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray = import_ray()
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        constants.ENABLE_RAY_CLUSTER = False
    settings: dict[str, Any] = {"num_cpus": num_cpus, "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                                "object_store_memory": 128 * 1024 * 1024, "configure_logging": False}
    ray.init(**{**settings, **options})
    addresses = {node.get("NodeManagerAddress") for node in ray.nodes()}
    if addresses != {"127.0.0.1"}:
        ray.shutdown()
        raise RuntimeError(f"Ray did not start on 127.0.0.1 only (nodes at {sorted(map(str, addresses))})")
    return ray


def worker_runtime_env(runtime_env: Mapping[str, Any] | None, env_vars: Mapping[str, str] | None
                       ) -> dict[str, Any] | None:
    """Ray's ``runtime_env`` for the workers: ``runtime_env`` with ``env_vars`` added to its own (None: the job's)."""
    environment = dict(runtime_env or {})
    if env_vars:
        environment["env_vars"] = {**environment.get("env_vars", {}), **env_vars}
    return environment or None


def _handle_of(sampler: SamplingClient | str) -> str:
    if isinstance(sampler, APIFuture):  # what a creation call returns (protocol 0.38): the client is its result
        sampler = sampler.result()
    if isinstance(sampler, SamplingClient):
        return sampler.get_sampler_handle()
    if isinstance(sampler, str) and sampler:
        return sampler
    raise InvalidInputError(f"expected a SamplingClient or its handle, got {type(sampler).__name__}")


# ---- the actors (plain classes; made Ray actors with ray.remote when a pool starts) ----------------

class Coordinator:
    """What the workers share: the latest published weights, and the longest 429 backoff any worker saw."""

    def __init__(self, version: int, handle: str) -> None:
        self._version, self._handle = version, handle
        self._backoff_until = 0.0  # wall-clock time (time.time()): the workers may be on other machines

    def publish(self, version: int, handle: str) -> int:
        if version > self._version:
            self._version, self._handle = version, handle
        return self._version

    def current(self) -> tuple[int, str]:
        return self._version, self._handle

    def exchange_backoff(self, until: float) -> float:
        """Note a worker's backoff (until a wall-clock time; 0: none) and answer the longest one noted."""
        self._backoff_until = max(self._backoff_until, until)
        return self._backoff_until


@dataclass
class _Policy:
    version: int
    sampler: SamplingClient
    running: int = 0  # rollouts using it right now: an old policy's client is closed when this drops to 0


class RolloutWorker:
    """One rollout worker: one SamplingClient at a time (the latest weights), ``rollout(sampler, task)`` per call.

    Runs as a threaded Ray actor (``max_concurrency``): ``run`` calls run side by side, ``switch`` and
    ``ready`` get threads of their own because the pool never starts more than ``rollouts_per_worker`` runs.
    """

    def __init__(self, index: int, rollout: Callable[[SamplingClient, Any], Any], coordinator: str,
                 backoff_poll_s: float) -> None:
        ray = import_ray()
        self._index = index
        self._rollout = rollout
        # By name, not by handle: a handle among the constructor's arguments would keep them in the object
        # store, where a restart might not find them (ray-project/ray#53727).
        self._coordinator: Any = ray.get_actor(coordinator)
        self._lock = threading.Lock()
        version, handle = ray.get(self._coordinator.current.remote(), timeout=60)  # a restart takes the latest weights
        self._policy = _Policy(version, SamplingClient.from_sampler_handle(handle))
        self._stopped = threading.Event()
        if backoff_poll_s > 0:
            threading.Thread(target=self._share_backoff, args=(ray, backoff_poll_s), daemon=True,
                             name=f"rollout-worker-{index}-backoff").start()

    def ready(self) -> tuple[int, int]:
        """(this worker's process id, the weights version it samples from)."""
        return os.getpid(), self._policy.version

    def switch(self, version: int, handle: str) -> int:
        """Sample from ``handle``'s weights from now on, if ``version`` is newer; answers the version in use."""
        if version <= self._policy.version:
            return self._policy.version
        sampler = SamplingClient.from_sampler_handle(handle)
        retired: SamplingClient | None
        with self._lock:
            if version <= self._policy.version:
                retired = sampler  # a newer one won meanwhile
            else:
                retired_policy, self._policy = self._policy, _Policy(version, sampler)
                retired = retired_policy.sampler if retired_policy.running == 0 else None
            current = self._policy.version
        if retired is not None:
            retired.close()
        return current

    def run(self, task: Any) -> tuple[Any, int, int, float]:
        """(the rollout's value, the weights version that produced it, this worker's index, seconds)."""
        with self._lock:
            policy = self._policy
            policy.running += 1
        started = time.monotonic()
        try:
            value = self._rollout(policy.sampler, task)
        finally:
            with self._lock:
                policy.running -= 1
                retire = policy.running == 0 and policy is not self._policy
            if retire:
                policy.sampler.close()
        return value, policy.version, self._index, time.monotonic() - started

    def stop(self) -> None:
        self._stopped.set()

    def _share_backoff(self, ray: ModuleType, poll_s: float) -> None:
        """Tell the coordinator how long this process holds back after a 429, and hold back as long as the
        longest backoff any worker reported."""
        while not self._stopped.wait(poll_s):
            try:
                sampler = self._policy.sampler
                mine = sampler.backoff_remaining()
                now = time.time()
                shared = ray.get(self._coordinator.exchange_backoff.remote(now + mine if mine > 0 else 0.0),
                                 timeout=max(10 * poll_s, 5.0))
                if shared - now > mine + poll_s:
                    sampler.back_off(min(shared - now, 3600.0))
            except Exception:  # best effort: the coordinator restarting or gone (pool closing), a closed client
                continue


# ---- the pool (in the trainer's process) ----------------------------------------------------------

@dataclass(frozen=True)
class _Submitted:
    task: Any
    worker: int
    at: float


class RolloutPool(Generic[T, R]):
    """Rollout workers as Ray actors; see the module docstring. Use as a context manager, or call :meth:`close`.

    ``rollout(sampler, task)`` runs in the workers: a module-level function of a module they can import, or
    one defined in the driver script (Ray pickles it by value). ``env_vars`` (e.g. ``TINKER_API_KEY``) are set
    in the workers' environment; ``runtime_env`` is passed to Ray as it is. ``num_cpus`` is what Ray reserves
    per worker (0 lets more workers than CPUs share a node: rollouts mostly wait on the service).
    """

    def __init__(self, rollout: Callable[[SamplingClient, T], R], sampler: SamplingClient | str, *,
                 workers: int = 2, rollouts_per_worker: int = 4, policy_version: int = 0, max_restarts: int = 3,
                 env_vars: Mapping[str, str] | None = None, runtime_env: Mapping[str, Any] | None = None,
                 num_cpus: float = 0.0, backoff_poll_s: float = 0.1, start_timeout: float = 120.0) -> None:
        for name, value, least in (("workers", workers, 1), ("rollouts_per_worker", rollouts_per_worker, 1),
                                   ("max_restarts", max_restarts, -1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidInputError(f"RolloutPool: {name} must be an integer >= {least}, got {value!r}")
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            raise InvalidInputError("RolloutPool needs a running Ray: call ray.init(...) first (docs/guides/ray.md)")
        self._per_worker = rollouts_per_worker
        handle = _handle_of(sampler)
        environment = worker_runtime_env(runtime_env, env_vars)
        coordinator = f"tinker-rollout-coordinator-{uuid.uuid4().hex}"
        self._coordinator = ray.remote(Coordinator).options(name=coordinator, num_cpus=0, max_restarts=-1).remote(
            policy_version, handle)
        worker_class = ray.remote(RolloutWorker).options(
            num_cpus=num_cpus, max_restarts=max_restarts, max_task_retries=0,
            max_concurrency=rollouts_per_worker + 2, runtime_env=environment)
        self._workers = [worker_class.remote(index, rollout, coordinator, backoff_poll_s)
                         for index in range(workers)]
        self._version, self._handle = policy_version, handle
        self._lock = threading.Condition()
        self._backlog: collections.deque[Any] = collections.deque()
        self._running: dict[Any, _Submitted] = {}  # ObjectRef -> what it runs
        self._finishing = 0  # taken from _running, not yet in _done (its result being fetched)
        self._load = [0] * workers  # rollouts running per worker
        # A worker whose rollout died with it is "probing" (not given rollouts) until it answers a ping: Ray
        # restarts it meanwhile; one that cannot come back (max_restarts used up) is "dead" for good.
        self._state = ["up"] * workers
        self._probes: dict[Any, int] = {}  # ObjectRef of a ping -> worker index
        self._reprobe: dict[int, float] = {}  # worker index -> when to ping it again (it was restarting)
        self._done: queue.SimpleQueue[Rollout[T, R] | None] = queue.SimpleQueue()  # None: closed
        self._closed = False
        try:
            ray.get([worker.ready.remote() for worker in self._workers], timeout=start_timeout)
        except Exception:
            self._kill_all()
            raise
        self._dispatcher = threading.Thread(target=self._dispatch, name="rollout-pool-dispatcher", daemon=True)
        self._dispatcher.start()

    # ---- the trainer's calls ------------------------------------------------------------------
    @property
    def workers(self) -> list[Any]:
        """The workers' Ray actor handles (index order)."""
        return list(self._workers)

    @property
    def policy_version(self) -> int:
        return self._version

    @property
    def in_flight(self) -> int:
        """Rollouts submitted and not yet taken from :meth:`as_completed` (running, waiting, or done and unread)."""
        with self._lock:
            closed = 1 if self._closed else 0  # the None that says so, once queued
            return len(self._backlog) + len(self._running) + self._finishing + max(0, self._done.qsize() - closed)

    def submit(self, task: T) -> None:
        """Queue one rollout; it starts on the least-loaded worker as soon as that one has room."""
        with self._lock:
            if self._closed:
                raise ClientStoppedError("the rollout pool is closed")
            self._backlog.append(task)
            self._lock.notify_all()

    def publish(self, sampler: SamplingClient | str, version: int, *, timeout: float = 60.0) -> None:
        """Give the workers new weights (a SamplingClient or its handle), numbered ``version`` (> the current one).

        Returns once every live worker switched (a worker restarting meanwhile takes them when it is back), so
        rollouts submitted afterwards use them."""
        if isinstance(version, bool) or not isinstance(version, int) or version <= self._version:
            raise InvalidInputError(f"publish: version must be an integer above {self._version}, got {version!r}")
        handle = _handle_of(sampler)
        ray = self._ray
        ray.get(self._coordinator.publish.remote(version, handle), timeout=timeout)
        self._version, self._handle = version, handle
        switches = [worker.switch.remote(version, handle) for worker in self._workers]
        ready, _ = ray.wait(switches, num_returns=len(switches), timeout=timeout)
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayActorError):  # dead or restarting: it reads the coordinator
                ray.get(ref)

    def as_completed(self, timeout: float | None = None) -> Iterator[Rollout[T, R]]:
        """Yield finished rollouts in order of completion until none is in flight.

        ``timeout``: the most seconds to wait for the next one (then :class:`TinkerTimeoutError`; the rollouts
        go on). Without one, a wait longer than a minute logs a warning each minute."""
        while self.in_flight:
            yield self.next_completed(timeout)

    def next_completed(self, timeout: float | None = None) -> Rollout[T, R]:
        """The next rollout to finish (see :meth:`as_completed`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = 0.0
        while True:
            step = _STALL_WARNING_S if deadline is None else min(_STALL_WARNING_S, deadline - time.monotonic())
            try:
                done = self._done.get(timeout=max(step, 0.0))
                if done is None:  # closed: tell any other waiter too
                    self._done.put(None)
                    raise ClientStoppedError("the rollout pool is closed")
                return done
            except queue.Empty:
                waited += max(step, 0.0)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TinkerTimeoutError(f"no rollout finished in {timeout} s ({self.in_flight} in flight)") \
                        from None
                log.warning("fanout.rollouts_waiting", seconds=round(waited), in_flight=self.in_flight,
                            workers=len(self._workers))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the dispatcher and the workers (rollouts still running are abandoned)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        self._dispatcher.join(timeout)
        self._done.put(None)  # wakes a thread waiting in next_completed
        self._kill_all()

    def __enter__(self) -> RolloutPool[T, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- the dispatcher thread ---------------------------------------------------------------
    def _dispatch(self) -> None:
        ray = self._ray
        while True:
            with self._lock:
                if self._closed:
                    return
                self._ping_restarted()
                self._start_waiting()
                refs = [*self._running, *self._probes]
                if not refs:
                    self._lock.wait(_PROBE_INTERVAL_S if self._reprobe else _STALL_WARNING_S)
                    continue
            try:
                ready, rest = ray.wait(refs, num_returns=1, timeout=_DISPATCH_POLL_S)
                if ready and rest:  # every other one done by now too, in one call rather than one each
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            except Exception as error:  # Ray shutting down under us
                log.warning("fanout.dispatcher_stopped", error=repr(error))
                return
            for ref in ready:
                if ref in self._probes:
                    self._probed(ref)
                    continue
                with self._lock:
                    submitted = self._running.pop(ref)
                    self._load[submitted.worker] -= 1
                    self._finishing += 1
                try:
                    self._done.put(self._finished(ref, submitted))
                finally:
                    with self._lock:
                        self._finishing -= 1

    def _start_waiting(self) -> None:
        """Start backlog rollouts on live workers with room, least loaded first. Holds the lock."""
        while self._backlog:
            live = [index for index, state in enumerate(self._state) if state == "up"]
            if not live:
                if "probing" not in self._state:  # every worker is gone for good: nothing will run them
                    while self._backlog:
                        task = self._backlog.popleft()
                        self._done.put(Rollout(task, None, RolloutWorkerDiedError(
                            "every rollout worker died and Ray could not restart them (max_restarts)", task=task),
                            None, None, 0.0))
                return
            worker = min(live, key=lambda index: (self._load[index], index))
            if self._load[worker] >= self._per_worker:
                return
            task = self._backlog.popleft()
            ref = self._workers[worker].run.remote(task)
            self._running[ref] = _Submitted(task, worker, time.monotonic())
            self._load[worker] += 1

    def _worker_died(self, worker: int) -> None:
        """Stop giving ``worker`` rollouts until it answers a ping."""
        with self._lock:
            if self._state[worker] == "up":
                self._state[worker] = "probing"
                self._probes[self._workers[worker].ready.remote()] = worker

    def _ping_restarted(self) -> None:
        """Ping again the workers that were restarting when last pinged, when it is time. Holds the lock."""
        now = time.monotonic()
        for worker, due in list(self._reprobe.items()):
            if due <= now:
                del self._reprobe[worker]
                self._probes[self._workers[worker].ready.remote()] = worker

    def _probed(self, ref: Any) -> None:
        ray = self._ray
        with self._lock:
            worker = self._probes.pop(ref)
        try:
            _, version = ray.get(ref)
            if version < self._version:  # it restarted before the last publish reached it
                ray.get(self._workers[worker].switch.remote(self._version, self._handle), timeout=60)
        except ray.exceptions.ActorUnavailableError:  # restarting: ask again shortly
            with self._lock:
                self._reprobe[worker] = time.monotonic() + _PROBE_INTERVAL_S
            return
        except ray.exceptions.RayActorError as error:
            state = "dead"
            log.warning("fanout.worker_gone", worker=worker, error=type(error).__name__)
        except Exception as error:  # back, but the switch to the latest weights failed: its rollouts say which
            state = "up"
            log.warning("fanout.worker_switch_failed", worker=worker, error=repr(error))
        else:
            state = "up"
            log.info("fanout.worker_back", worker=worker)
        with self._lock:
            self._state[worker] = state

    def _finished(self, ref: Any, submitted: _Submitted) -> Rollout[T, R]:
        ray = self._ray
        elapsed = time.monotonic() - submitted.at
        try:
            value, version, worker, seconds = ray.get(ref)
        except ray.exceptions.RayActorError as died:
            self._worker_died(submitted.worker)
            error = RolloutWorkerDiedError(
                f"rollout worker {submitted.worker} died while running this rollout ({type(died).__name__}); "
                "Ray restarts it (max_restarts) and the pool goes on", task=submitted.task, worker=submitted.worker)
            error.__cause__ = died
            return Rollout(submitted.task, None, error, None, submitted.worker, elapsed)
        except ray.exceptions.RayTaskError as failed:  # the rollout raised: the same exception, here
            return Rollout(submitted.task, None, failed.as_instanceof_cause(), None, submitted.worker, elapsed)
        except Exception as error:
            return Rollout(submitted.task, None, error, None, submitted.worker, elapsed)
        return Rollout(submitted.task, value, None, version, worker, seconds)

    def _kill_all(self) -> None:
        ray = self._ray
        for actor in [*self._workers, self._coordinator]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception as error:  # already gone
                log.debug("fanout.kill_failed", error=repr(error))


class RayExecutor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` that runs each call as a Ray task (``fn`` must be picklable).

    For :func:`~tinker_actors.fanout.executors.rollouts` or any executor-based code (the cookbook's rollout
    executor). ``runtime_env`` / ``env_vars`` reach the tasks' worker processes; ``num_cpus`` is reserved per
    task (0: as many tasks as wait on the network at once).
    """

    def __init__(self, *, num_cpus: float = 1.0, env_vars: Mapping[str, str] | None = None,
                 runtime_env: Mapping[str, Any] | None = None, max_retries: int = 0) -> None:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            raise InvalidInputError("RayExecutor needs a running Ray: call ray.init(...) first")
        environment = worker_runtime_env(runtime_env, env_vars)
        self._options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": max_retries}
        if environment:
            self._options["runtime_env"] = environment
        self._remotes: dict[Callable[..., Any], Any] = {}
        self._futures: dict[concurrent.futures.Future[Any], Any] = {}
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            remote = self._remotes.get(fn)
            if remote is None:
                remote = self._remotes[fn] = self._ray.remote(fn).options(**self._options)
        ref = remote.remote(*args, **kwargs)
        future: concurrent.futures.Future[R] = ref.future()
        with self._lock:
            self._futures[future] = ref
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.pop(future, None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = dict(self._futures)
        if cancel_futures:
            for future, ref in pending.items():
                if future.cancel() or not future.done():
                    try:
                        self._ray.cancel(ref)
                    except Exception as error:  # already finished
                        log.debug("fanout.cancel_failed", error=repr(error))
        if wait:
            concurrent.futures.wait(list(pending))
