"""Child specs as data: what to start, when to restart it, how long to wait for it to stop."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pykka import ActorRef

__all__ = ["ChildSpec", "Restart", "Strategy"]


class Restart(enum.Enum):
    PERMANENT = "permanent"
    """Always restarted, whatever the exit reason."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (crash, start failure)."""
    TEMPORARY = "temporary"
    """Never restarted; removed from the supervisor when it ends."""

    def should_restart(self, abnormal: bool) -> bool:
        if self is Restart.PERMANENT:
            return True
        if self is Restart.TRANSIENT:
            return abnormal
        return False


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    """Restart only the child that ended."""
    ONE_FOR_ALL = "one_for_all"
    """Stop all other children (reverse order) and restart every child (start order)."""
    REST_FOR_ONE = "rest_for_one"
    """Stop the children started after it (reverse order) and restart it and them (start order)."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    ``start`` is called in the supervisor's thread and must construct exactly one
    :class:`~supervisors.SupervisedActor` there and return its ref, typically
    ``functools.partial(MyActor.start, arg1, arg2)`` or ``lambda: MyActor.start(...)``.
    """

    id: str
    start: Callable[[], ActorRef[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    """Seconds to wait for the child to stop before abandoning it."""
    start_timeout: float = 5.0
    """Seconds to wait for its ``on_init`` before counting the start as failed."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child spec needs a non-empty id")
        if self.shutdown < 0 or self.start_timeout <= 0:
            raise ValueError("shutdown must be >= 0 and start_timeout > 0")
