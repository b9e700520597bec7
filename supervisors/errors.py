"""Exceptions of the supervision library (no dependency on any application error tree)."""

from __future__ import annotations

__all__ = [
    "AskTimeout",
    "ChildAlreadyExists",
    "ChildNotFound",
    "ChildNotRunning",
    "ChildSpecError",
    "ChildStartError",
    "FatalHandlerError",
    "NameLookupTimeout",
    "SupervisionError",
    "SupervisorGaveUp",
    "SupervisorNotRunning",
]


class SupervisionError(Exception):
    """Base of every error raised by :mod:`supervisors`."""


class ChildSpecError(SupervisionError, TypeError):
    """A child spec is malformed (for example its ``start`` did not build a ``SupervisedActor``)."""


class ChildStartError(SupervisionError):
    """A child failed to start: its ``on_init`` raised or did not finish within ``start_timeout``.

    ``__cause__`` holds the child's own exception when there is one.
    """

    def __init__(self, child_id: str, detail: str) -> None:
        super().__init__(f"child {child_id!r} failed to start: {detail}")
        self.child_id = child_id


class ChildAlreadyExists(SupervisionError):
    """``start_child`` was given an id that the supervisor already has."""

    def __init__(self, child_id: str) -> None:
        super().__init__(f"a child with id {child_id!r} already exists")
        self.child_id = child_id


class ChildNotRunning(SupervisionError):
    """The child is stopped and will not come back (or its supervisor is gone)."""

    def __init__(self, child_id: str, detail: str) -> None:
        super().__init__(f"child {child_id!r} is not running: {detail}")
        self.child_id = child_id


class ChildNotFound(ChildNotRunning, LookupError):
    """The supervisor has no child with this id (never had, or a temporary child that ended)."""

    def __init__(self, child_id: str) -> None:
        super().__init__(child_id, "the supervisor has no child with this id")


class NameLookupTimeout(SupervisionError, TimeoutError):
    """A name did not resolve to a running actor in time (a restart took longer than the wait)."""

    def __init__(self, child_id: str, timeout: float) -> None:
        super().__init__(f"child {child_id!r} was not running again within {timeout:.3g} s")
        self.child_id = child_id
        self.timeout = timeout


class AskTimeout(SupervisionError, TimeoutError):
    """No reply within the deadline. The actor may still handle the message later (pykka cannot
    withdraw a queued message), so treat the outcome as unknown."""

    def __init__(self, child_id: str, timeout: float) -> None:
        super().__init__(f"child {child_id!r} did not reply within {timeout:.3g} s")
        self.child_id = child_id
        self.timeout = timeout


class SupervisorNotRunning(SupervisionError):
    """The supervisor was stopped or gave up; it accepts no more requests."""


class SupervisorGaveUp(SupervisionError):
    """Restart intensity was exceeded: the supervisor stopped its children and itself.

    ``child_id`` and ``child_error`` describe the last failure, the one that tipped it over.
    """

    def __init__(self, supervisor: str, child_id: str, child_error: BaseException | None,
                 max_restarts: int, max_seconds: float) -> None:
        cause = repr(child_error) if child_error is not None else "abnormal exit"
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts in "
            f"{max_seconds:g} s (last: child {child_id!r}, {cause})"
        )
        self.supervisor = supervisor
        self.child_id = child_id
        self.child_error = child_error


class FatalHandlerError(Exception):
    """A handler raised a ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``, ...).

    pykka reacts to those by stopping every actor in the process, so the supervised base class
    converts them into this ordinary exception and crashes only the one actor. ``original`` (and
    ``__cause__``) hold what was raised.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"handler raised {type(original).__name__}: {original!r}")
        self.original = original
