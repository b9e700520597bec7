"""A supervisor's published view of its children: stable names, lookups and the printable tree.

Only the owning supervisor writes (from its actor thread); any thread reads, under one condition
variable. Lookups therefore never send a message to the supervisor: they cannot deadlock with it and
they work while it is busy restarting children; a reader that finds a restart in progress waits
(bounded) on the condition until the supervisor publishes the new actor.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pykka import ActorRef

from supervisors.errors import ChildNotFound, ChildNotRunning, NameLookupTimeout
from supervisors.exits import ExitReason
from supervisors.spec import Restart, Strategy

__all__ = ["ChildDirectory", "ChildInfo", "ChildState", "SupervisorStatus", "render_tree"]


class ChildState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    """Ended and not coming back (a transient child that stopped normally, or a shut-down tree)."""


class SupervisorStatus(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    AWAITING_PARENT = "awaiting_parent"
    """Exited abnormally; its own supervisor has not yet decided whether to restart it."""
    RESTARTING = "restarting"
    STOPPED = "stopped"
    GAVE_UP = "gave_up"

    @property
    def final(self) -> bool:
        return self in (SupervisorStatus.STOPPED, SupervisorStatus.GAVE_UP)


_WAITING_STATES = (ChildState.STARTING, ChildState.RESTARTING)
_TRANSITIONAL_STATUSES = (
    SupervisorStatus.STARTING,
    SupervisorStatus.AWAITING_PARENT,
    SupervisorStatus.RESTARTING,
)


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A snapshot of one child, as published by its supervisor."""

    child_id: str
    state: ChildState
    restart: Restart
    actor_class: str = "?"
    ref: ActorRef[Any] | None = None
    restarts: int = 0
    """How many times this child was started again after its first start."""
    last_exit: ExitReason | None = None
    abandoned: int = 0
    """How many incarnations ignored a stop for longer than the shutdown timeout."""
    nested: ChildDirectory | None = None
    """The child's own directory when the child is a supervisor."""
    shutdown: float = 0.0

    def evolve(self, **changes: Any) -> ChildInfo:
        return replace(self, **changes)


class ChildDirectory:
    """Published children of one supervisor, kept across its restarts so names stay valid."""

    def __init__(self, name: str, strategy: Strategy, max_restarts: int, max_seconds: float) -> None:
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._cond = threading.Condition()
        self._children: dict[str, ChildInfo] = {}
        self._status = SupervisorStatus.STARTING
        self._exit_reason: ExitReason | None = None
        self._owner_urn: str | None = None

    # ---- reading (any thread) -------------------------------------------------------------------

    @property
    def status(self) -> SupervisorStatus:
        return self._status

    @property
    def exit_reason(self) -> ExitReason | None:
        return self._exit_reason

    def get(self, child_id: str) -> ChildInfo | None:
        with self._cond:
            return self._children.get(child_id)

    def children(self) -> list[ChildInfo]:
        """Children in start order."""
        with self._cond:
            return list(self._children.values())

    def resolve(self, child_id: str, timeout: float, *, not_urn: str | None = None) -> ActorRef[Any]:
        """The running actor behind ``child_id``, waiting up to ``timeout`` s for a restart.

        ``not_urn`` skips an incarnation the caller already found dead, so the wait lasts until
        the supervisor has published its replacement.

        Raises ``ChildNotFound`` / ``ChildNotRunning`` at once when waiting cannot help, and
        ``NameLookupTimeout`` when the restart takes longer than ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ref = self._running_ref(child_id, not_urn)
                if ref is not None:
                    return ref
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NameLookupTimeout(child_id, timeout)
                self._cond.wait(remaining)

    def _running_ref(self, child_id: str, not_urn: str | None) -> ActorRef[Any] | None:
        """The ref if resolvable now; None to keep waiting; raises when waiting is pointless."""
        status = self._status
        if status.final:
            raise ChildNotRunning(child_id, f"supervisor {self.name!r} is {status.value}")
        info = self._children.get(child_id)
        if status in _TRANSITIONAL_STATUSES:
            if info is None or info.state is not ChildState.RUNNING:
                return None
        elif info is None:
            raise ChildNotFound(child_id)
        if info.state is ChildState.STOPPED:
            detail = info.last_exit.describe() if info.last_exit else "stopped"
            raise ChildNotRunning(child_id, detail)
        if info.state in _WAITING_STATES or info.ref is None:
            return None
        if info.ref.actor_urn == not_urn or not info.ref.is_alive():
            return None  # it died; the supervisor has not processed the report yet
        return info.ref

    def wait_for(self, predicate: Callable[[ChildDirectory], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds (checked at every publication); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    # ---- writing (the owning supervisor's thread only) ---------------------------------------------

    def claim(self, owner_urn: str) -> None:
        """A new supervisor incarnation takes over this directory and starts from empty."""
        with self._cond:
            if self._owner_urn is not None and self._status in (
                SupervisorStatus.STARTING, SupervisorStatus.RUNNING
            ):
                raise RuntimeError(
                    f"directory {self.name!r} is still owned by a running supervisor; "
                    "a supervisor child spec cannot be used twice at the same time"
                )
            self._owner_urn = owner_urn
            self._children = {}
            self._status = SupervisorStatus.STARTING
            self._exit_reason = None
            self._cond.notify_all()

    def publish(self, info: ChildInfo) -> None:
        with self._cond:
            self._children[info.child_id] = info
            self._cond.notify_all()

    def publish_many(self, infos: list[ChildInfo]) -> None:
        with self._cond:
            for info in infos:
                self._children[info.child_id] = info
            self._cond.notify_all()

    def remove(self, child_id: str) -> None:
        with self._cond:
            self._children.pop(child_id, None)
            self._cond.notify_all()

    def set_status(self, status: SupervisorStatus, reason: ExitReason | None = None) -> None:
        with self._cond:
            self._status = status
            if reason is not None:
                self._exit_reason = reason
            self._cond.notify_all()

    def finish(self, status: SupervisorStatus, reason: ExitReason) -> None:
        """The owner ends; a restart hold placed by its parent stays in force."""
        with self._cond:
            self._exit_reason = reason
            if self._status is not SupervisorStatus.RESTARTING:
                self._status = status
            self._cond.notify_all()

    def hold_for_restart(self) -> None:
        """Parent side: this supervisor is about to be (re)started; lookups wait instead of failing."""
        self.set_status(SupervisorStatus.RESTARTING)

    def release(self, status: SupervisorStatus) -> None:
        """Parent side: it will not be restarted; end a transitional status with a final one."""
        with self._cond:
            if self._status in _TRANSITIONAL_STATUSES:
                self._status = status
                self._cond.notify_all()

    def __repr__(self) -> str:
        return f"<ChildDirectory {self.name!r} {self._status.value}, {len(self._children)} children>"


def render_tree(directory: ChildDirectory) -> str:
    """A printable tree: every child's state, restart count and last exit reason, nested inside."""
    lines = [_supervisor_line(directory)]
    _render_children(directory, "", lines)
    return "\n".join(lines)


def _supervisor_line(directory: ChildDirectory) -> str:
    line = (
        f"{directory.name} [{directory.strategy.value}, max {directory.max_restarts} restarts in "
        f"{directory.max_seconds:g} s] {directory.status.value}"
    )
    if directory.exit_reason is not None and directory.exit_reason.abnormal:
        line += f" ({directory.exit_reason.describe()})"
    return line


def _render_children(directory: ChildDirectory, indent: str, lines: list[str]) -> None:
    children = directory.children()
    for index, info in enumerate(children):
        last = index == len(children) - 1
        branch, extension = ("└── ", "    ") if last else ("├── ", "│   ")
        details = [info.state.value, info.restart.value, f"restarts={info.restarts}"]
        if info.last_exit is not None:
            details.append(f"last_exit={info.last_exit.describe()}")
        if info.abandoned:
            details.append(f"abandoned={info.abandoned}")
        if info.nested is not None:
            header = _supervisor_line(info.nested)
            if info.nested.name != info.child_id:
                header = f"{info.child_id}: {header}"
            lines.append(f"{indent}{branch}{header} ({', '.join(details[1:])})")
            _render_children(info.nested, indent + extension, lines)
        else:
            lines.append(f"{indent}{branch}{info.child_id}: {info.actor_class} {' '.join(details)}")
