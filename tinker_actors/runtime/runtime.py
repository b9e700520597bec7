"""The process-wide runtime: the IoLoop and the root supervision tree (ARCHITECTURE.md, section 1).

::

    Runtime
    ├── IoLoop                    daemon thread running asyncio
    └── root (one_for_one)
        ├── token_keepers         permanent  (slot; a supervisor of one TokenKeeper per credential)
        ├── session_manager       permanent  (slot)
        ├── telemetry_reporter    permanent  (slot)
        ├── grad_norm_tracker     permanent  (slot)
        └── service-N*            one ServiceSupervisor per ServiceClient (temporary, dynamic)

``Runtime.get()`` creates and starts it lazily and thread-safely. ``shutdown(deadline)`` stops the
tree in reverse start order (services first, the session manager last) and then the IoLoop, within a
bounded time; an atexit hook calls it. ``with Runtime.scoped() as rt:`` gives a test its own runtime.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import ClassVar

from supervisors import (
    ChildSpec,
    NamedRef,
    Restart,
    Strategy,
    SupervisionError,
    Supervisor,
    SupervisorStatus,
)
from tinker_actors.errors import ClientStoppedError
from tinker_actors.fanout.fork_guard import fork_generation, refuse_if_forked
from tinker_actors.runtime.ioloop import IoLoop
from tinker_actors.runtime.slots import ROOT_SLOTS, SlotFactory, placeholder_spec, registered_slots

__all__ = ["Runtime", "RuntimeStoppedError"]

logger = logging.getLogger(__name__)

ATEXIT_DEADLINE = 5.0


class RuntimeStoppedError(ClientStoppedError):
    """The runtime was shut down (or its root supervisor gave up); it accepts no more work."""


class Runtime:
    """The IoLoop plus the root supervisor. Create with :meth:`get` (shared) or :meth:`scoped` (tests)."""

    _current: ClassVar[Runtime | None] = None
    _class_lock: ClassVar[threading.Lock] = threading.Lock()
    _atexit_registered: ClassVar[bool] = False
    _exiting: ClassVar[bool] = False

    def __init__(self, *, slots: Mapping[str, SlotFactory] | None = None, max_restarts: int = 3,
                 max_seconds: float = 5.0, name: str = "root") -> None:
        """``slots`` overrides the registered slot factories (for tests)."""
        self._slot_overrides = dict(slots or {})
        self._max_restarts = max_restarts
        self._max_seconds = max_seconds
        self._name = name
        self._lock = threading.Lock()
        self._ioloop = IoLoop()
        self._root: Supervisor | None = None
        self._stopped = False
        self._service_ids = itertools.count(1)
        self.fork_generation = fork_generation()  # a fork()-ed child has the objects but not the threads

    # ---- the shared instance ----------------------------------------------------------------------

    @classmethod
    def get(cls) -> Runtime:
        """The process-wide runtime, started on first use (a shut-down one is replaced).

        Raises :class:`RuntimeStoppedError` once the interpreter is exiting: a finalizer running
        after the atexit hook must not start a fresh tree.
        """
        with cls._class_lock:
            if cls._exiting:
                raise RuntimeStoppedError("the process is exiting; the runtime was shut down")
            current = cls._current
            if current is not None and not current.stopped:
                refuse_if_forked(current.fork_generation, "The tinker_actors runtime")
            if current is None or current.stopped:
                current = cls().start()
                cls._current = current
                cls._register_atexit()
            return current

    @classmethod
    @contextmanager
    def scoped(cls, *, slots: Mapping[str, SlotFactory] | None = None, max_restarts: int = 3,
               max_seconds: float = 5.0, deadline: float = 5.0) -> Iterator[Runtime]:
        """An isolated runtime that ``Runtime.get()`` returns inside the block; shut down on exit."""
        runtime = cls(slots=slots, max_restarts=max_restarts, max_seconds=max_seconds).start()
        with cls._class_lock:
            previous, cls._current = cls._current, runtime
        try:
            yield runtime
        finally:
            runtime.shutdown(deadline)
            with cls._class_lock:
                if cls._current is runtime:
                    cls._current = previous

    @classmethod
    def _register_atexit(cls) -> None:
        if not cls._atexit_registered:
            atexit.register(cls._shutdown_at_exit)
            cls._atexit_registered = True

    @classmethod
    def _shutdown_at_exit(cls) -> None:
        with cls._class_lock:
            cls._exiting = True
        current = cls._current
        if current is not None:
            current.shutdown(ATEXIT_DEADLINE)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Runtime:
        with self._lock:
            if self._stopped:
                raise RuntimeStoppedError("this runtime was shut down")
            if self._root is not None:
                return self
            self._ioloop.start()
            try:
                self._root = Supervisor.start(
                    self._slot_specs(), strategy=Strategy.ONE_FOR_ONE, max_restarts=self._max_restarts,
                    max_seconds=self._max_seconds, name=self._name,
                )
            except BaseException:
                self._ioloop.stop(1.0)
                raise
        return self

    def shutdown(self, deadline: float = 5.0) -> bool:
        """Stop services, slots (reverse start order) and the IoLoop within ``deadline`` seconds.

        Idempotent. Returns False if something had to be abandoned (it runs on daemon threads, so
        the process can still exit).
        """
        with self._lock:
            if self._stopped:
                return True
            self._stopped = True
            root = self._root
        started = time.monotonic()
        # Keep a little of the budget for the loop: actors flush through it while they stop.
        reserve = min(1.0, deadline * 0.2)
        clean = root.stop(max(0.01, deadline - reserve)) if root is not None else True
        remaining = max(0.01, deadline - (time.monotonic() - started))
        return self._ioloop.stop(remaining) and clean

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _slot_specs(self) -> list[ChildSpec]:
        factories = {**registered_slots(), **self._slot_overrides}
        specs = []
        for slot in ROOT_SLOTS:
            factory = factories.get(slot)
            spec = factory(self) if factory is not None else placeholder_spec(slot)
            if spec.id != slot:
                raise ValueError(f"the factory for slot {slot!r} returned a spec with id {spec.id!r}")
            specs.append(spec)
        return specs

    # ---- what the rest of the SDK uses ----------------------------------------------------------------

    @property
    def ioloop(self) -> IoLoop:
        return self._ioloop

    @property
    def root(self) -> Supervisor:
        if self._root is None:
            raise RuntimeStoppedError("the runtime was not started")
        return self._root

    def slot(self, slot: str) -> NamedRef:
        """A stable handle on the actor in a root slot."""
        if slot not in ROOT_SLOTS:
            raise ValueError(f"unknown root slot {slot!r}")
        return self.root.child(slot)

    @property
    def session_manager(self) -> NamedRef:
        return self.slot("session_manager")

    @property
    def telemetry_reporter(self) -> NamedRef:
        return self.slot("telemetry_reporter")

    @property
    def grad_norm_tracker(self) -> NamedRef:
        return self.slot("grad_norm_tracker")

    def start_service_supervisor(self, children: Iterable[ChildSpec] = (), *, name: str | None = None,
                                 strategy: Strategy = Strategy.REST_FOR_ONE, max_restarts: int = 3,
                                 max_seconds: float = 5.0, restart: Restart = Restart.TEMPORARY,
                                 shutdown: float = 10.0, timeout: float = 30.0) -> Supervisor:
        """Start one ServiceSupervisor under the root (one per ServiceClient) and return its handle.

        It is *temporary* by default: when it gives up, its clients fail with typed errors and the
        root (with the session manager and telemetry) is not taken down with it.
        """
        root = self._live_root()
        service_id = name if name is not None else f"service-{next(self._service_ids)}"
        spec = Supervisor.child_spec(service_id, children, strategy=strategy, max_restarts=max_restarts,
                                     max_seconds=max_seconds, restart=restart, shutdown=shutdown,
                                     start_timeout=timeout)
        try:
            root.start_child(spec, timeout=timeout)
        except SupervisionError as err:
            if self._stopped or root.status.final:
                raise RuntimeStoppedError("the runtime is shutting down") from err
            raise
        return root.supervisor(service_id)

    def stop_service_supervisor(self, name: str, *, timeout: float = 15.0) -> None:
        """Stop a ServiceSupervisor and its clients (reverse order), bounded by its shutdown timeout."""
        self._live_root().terminate_child(name, timeout=timeout)

    def tree(self) -> str:
        """The printable supervision tree: state, restart count and last exit of every actor."""
        loop_state = "running" if self._ioloop.running else "stopped"
        return f"IoLoop {loop_state}\n{self.root.tree()}"

    def _live_root(self) -> Supervisor:
        root = self.root
        if self._stopped or root.status in (SupervisorStatus.STOPPED, SupervisorStatus.GAVE_UP):
            raise RuntimeStoppedError(
                "the runtime was shut down" if self._stopped else f"the root supervisor {root.status.value}"
            )
        return root

    def __repr__(self) -> str:
        return f"<Runtime {self._name!r} {'stopped' if self._stopped else 'running'}>"
