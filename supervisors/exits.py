"""How an actor ended, and the report a child sends its supervisor about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ChildExited", "ExitKind", "ExitReason"]


class ExitKind(enum.Enum):
    NORMAL = "normal"
    """Stopped on request (``ref.stop()``, or the supervisor shutting it down)."""
    CRASHED = "crashed"
    """A handler raised (tell or ask path), or the actor called ``crash()``."""
    START_FAILED = "start_failed"
    """``on_init`` raised: the actor never served a message."""
    KILLED = "killed"
    """Abandoned by its supervisor after it ignored a stop for longer than its shutdown timeout."""


@dataclass(frozen=True, slots=True)
class ExitReason:
    kind: ExitKind
    error: BaseException | None = None

    @classmethod
    def normal(cls) -> ExitReason:
        return _NORMAL

    @classmethod
    def crashed(cls, error: BaseException) -> ExitReason:
        return cls(ExitKind.CRASHED, error)

    @classmethod
    def start_failed(cls, error: BaseException) -> ExitReason:
        return cls(ExitKind.START_FAILED, error)

    @classmethod
    def killed(cls) -> ExitReason:
        return _KILLED

    @property
    def abnormal(self) -> bool:
        """What ``transient`` children are restarted for: anything but a requested stop."""
        return self.kind is not ExitKind.NORMAL

    def describe(self) -> str:
        if self.error is None:
            return self.kind.value
        return f"{self.kind.value}: {type(self.error).__name__}: {self.error}"


_NORMAL = ExitReason(ExitKind.NORMAL)
_KILLED = ExitReason(ExitKind.KILLED)


@dataclass(frozen=True, slots=True)
class ChildExited:
    """Sent (``tell``) by a supervised actor to its supervisor exactly once, however it ended.

    ``urn`` identifies the incarnation, so a supervisor can ignore reports from an actor it has
    already replaced or stopped itself.
    """

    child_id: str
    urn: str
    reason: ExitReason
