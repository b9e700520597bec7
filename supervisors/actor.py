"""The supervised actor base class: every way an actor can end is reported exactly once.

pykka has no links or monitors, and each way of dying takes a different path through it (see the
project's PYKKA.md, C.6). This base class closes every path:

=================================  ==========================================  ================
how the actor ends                 what pykka does                             what we add
=================================  ==========================================  ================
``ref.stop()``                     ``on_stop``                                 report NORMAL
exception in a *tell* handler      ``on_failure``                              report CRASHED
exception in an *ask* handler      replies the error, actor **keeps running**  crash too (default)
exception in ``on_start``          logs, stops; neither hook is called         report START_FAILED
``BaseException`` in a handler     **stops every actor in the process**        crash only this one
abandoned after a stop timeout     (nothing: a thread cannot be killed)        exit after the handler
=================================  ==========================================  ================

Whatever the way, no message is lost silently (:mod:`supervisors.inbox`): what is still queued when the actor
ends is taken out at once; queued asks fail with ``ActorDeadError`` (as in pykka) and queued tells go to
:meth:`SupervisedActor.on_undelivered` (pykka drops them), where an actor fails the reply a tell carries;
a message sent after the end is refused like one sent to a dead actor.

Subclasses override :meth:`SupervisedActor.on_init` and :meth:`SupervisedActor.on_terminate`
instead of pykka's ``on_start`` / ``on_stop`` / ``on_failure``; ``on_terminate`` runs exactly once,
whatever the reason, so clean-up lives in one place.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, ClassVar, Concatenate, NoReturn, ParamSpec, TypeVar, final

import pykka
from pykka import ActorDeadError, ActorRef, ActorRegistry
from pykka.messages import _ActorStop

from supervisors.errors import FatalHandlerError
from supervisors.exits import ChildExited, ExitKind, ExitReason
from supervisors.inbox import WAKE, ClosableInbox
from supervisors.timers import Timer, TimerService, default_timer_service

__all__ = ["ChildLink", "SupervisedActor", "crash_on_error", "current_actor"]

logger = logging.getLogger(__name__)

# The one pykka internal we rely on: every message (stop, proxy call, plain message) is dispatched
# through Actor._handle_receive. Overriding it is the only way to stop a BaseException before
# pykka's loop turns it into ActorRegistry.stop_all(). Fail at import, not at run time, if it moves.
if not callable(getattr(pykka.Actor, "_handle_receive", None)):  # pragma: no cover
    raise ImportError("supervisors needs pykka 4.x (Actor._handle_receive not found)")


class ChildLink:
    """What a supervisor and one incarnation of its child share; thread-safe by construction.

    The supervisor creates it and offers it to the constructor of the actor it starts (through a
    thread-local, because pykka runs ``__init__`` in the caller's thread). The child uses it to report
    its start and its exit; the supervisor uses it to wait for the start and, as a last resort, to
    abandon a child that ignores a stop.
    """

    def __init__(self, parent: ActorRef[Any] | None, child_id: str) -> None:
        self.parent = parent
        self.child_id = child_id
        self.started = threading.Event()
        self.exited = threading.Event()
        self.start_error: BaseException | None = None
        self.exit_reason: ExitReason | None = None
        self.actor: SupervisedActor | None = None
        self.thread: threading.Thread | None = None
        self.killed = False

    def kill(self) -> None:
        """Abandon the actor: it handles no further message and exits when its handler returns.

        A Python thread cannot be interrupted, so a handler that is stuck stays stuck; but the
        actor is unregistered and marked stopped at once, so tells and asks to it fail fast.
        """
        self.killed = True
        actor = self.actor
        if actor is not None:
            ActorRegistry.unregister(actor.actor_ref)
            actor.actor_stopped.set()
            actor._answer_undelivered(ExitReason.killed())  # its thread may never come back to do it


_offered = threading.local()


@contextmanager
def offering(link: ChildLink) -> Iterator[None]:
    """Make ``link`` the one the next ``SupervisedActor`` constructed in this thread takes."""
    previous = getattr(_offered, "link", None)
    _offered.link = link
    try:
        yield
    finally:
        _offered.link = previous


_running = threading.local()  # .actor: the SupervisedActor whose thread this is (an actor keeps its thread)


def current_actor() -> SupervisedActor | None:
    """The actor whose thread is calling, or None outside every actor's thread (to refuse waits that would
    block the very actor that has to answer them)."""
    actor: SupervisedActor | None = getattr(_running, "actor", None)
    return actor


def _take_offered_link() -> ChildLink | None:
    link: ChildLink | None = getattr(_offered, "link", None)
    if link is not None and link.actor is None:
        _offered.link = None
        return link
    return None


class SupervisedActor(pykka.ThreadingActor):
    """Base class for actors that live in a supervision tree (or alone: then nobody is told).

    Override :meth:`on_init` (runs in the actor thread before any message) and
    :meth:`on_terminate` (runs exactly once at the end, whatever the reason). Handle messages with
    ``on_receive`` or plain methods called through a proxy, as in pykka.

    Errors raised by a handler crash the actor, even on the *ask* path: the asker gets the
    exception and the supervisor builds a fresh actor, so no half-updated state survives. Errors
    listed in :attr:`expected_errors` are only returned to the asker (the actor lives on). Set
    :attr:`let_it_crash` to False for pykka's behaviour (asks never crash) and mark single methods
    with :func:`crash_on_error` or call :meth:`crash`.
    """

    use_daemon_thread: ClassVar[bool] = True
    let_it_crash: ClassVar[bool] = True
    expected_errors: ClassVar[tuple[type[Exception], ...]] = ()

    _FORBIDDEN_OVERRIDES: ClassVar[dict[str, str]] = {
        "on_start": "on_init",
        "on_stop": "on_terminate",
        "on_failure": "on_terminate",
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for pykka_hook, ours in SupervisedActor._FORBIDDEN_OVERRIDES.items():
            if pykka_hook in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {pykka_hook}(); a SupervisedActor overrides {ours}() "
                    "instead, so its supervisor is always told how it ended"
                )

    def __init__(self) -> None:
        super().__init__()
        link = _take_offered_link()
        self._link: ChildLink = link if link is not None else ChildLink(None, type(self).__name__)
        self._link.actor = self
        self._exit_reason: ExitReason | None = None
        self._timers: list[Timer] = []

    # ---- hooks for subclasses -------------------------------------------------------------------

    def on_init(self) -> None:
        """Set up state in the actor thread. Raising here is reported as START_FAILED."""

    def on_terminate(self, reason: ExitReason) -> None:
        """Release resources. Called once, in the actor thread, for every kind of exit."""

    def on_undelivered(self, message: Any, reason: ExitReason) -> None:
        """A tell that was still queued when this actor ended (``reason``); it was never handled.

        Fail the reply it carries, if any, so its sender does not wait forever. Called after
        :meth:`on_terminate`, in the actor thread, or in the supervisor's thread for an abandoned actor:
        touch nothing of the actor's state, only the message. The default drops it with a debug line.
        """
        logger.debug("%s ended (%s) before handling %r", self, reason.kind.value, type(message).__name__)

    # ---- what subclasses may call ---------------------------------------------------------------

    @property
    def child_id(self) -> str:
        return self._link.child_id

    @property
    def exit_reason(self) -> ExitReason | None:
        return self._exit_reason

    def crash(self, error: Exception) -> NoReturn:
        """Crash now: the asker (if any) gets ``error`` and the supervisor rebuilds this actor.

        Messages queued behind the current one are not handled by this (possibly corrupt)
        instance: queued asks fail with ``ActorDeadError``.
        """
        self._exit(ExitReason.crashed(error))
        raise error

    def send_after(self, delay: float, message: Any) -> Timer:
        """Tell this actor ``message`` after ``delay`` s; cancelled automatically when it exits."""
        return self._keep_timer(self._timer_service().send_after(delay, self.actor_ref, message))

    def send_interval(self, interval: float, message: Any, *, first_delay: float | None = None) -> Timer:
        """Tell this actor ``message`` every ``interval`` s until cancelled or the actor exits."""
        timer = self._timer_service().send_interval(interval, self.actor_ref, message, first_delay=first_delay)
        return self._keep_timer(timer)

    def _timer_service(self) -> TimerService:
        return default_timer_service()

    def _keep_timer(self, timer: Timer) -> Timer:
        self._timers = [t for t in self._timers if t.active]
        self._timers.append(timer)
        return timer

    # ---- pykka hooks, closed ----------------------------------------------------------------------

    @staticmethod
    def _create_actor_inbox() -> ClosableInbox:
        return ClosableInbox()

    @final
    def on_start(self) -> None:
        self._link.thread = threading.current_thread()
        _running.actor = self
        try:
            self.on_init()
        except BaseException as exc:  # BaseException must not reach pykka's loop
            self._link.start_error = exc
            logger.error("%s failed to start", self, exc_info=exc)
            # Stop without re-raising: pykka would log the same traceback again. Its loop sees the
            # stopped flag, skips the message loop and fails queued asks with ActorDeadError.
            self._exit(ExitReason.start_failed(exc))
            self._link.started.set()
            return
        self._link.started.set()
        if self._link.killed:  # abandoned while on_init was stuck
            self._exit(ExitReason.killed())

    @final
    def on_stop(self) -> None:
        self._exit(ExitReason.normal())

    @final
    def on_failure(self, exception_type: type[BaseException] | None, exception_value: BaseException | None,
                   traceback: TracebackType | None) -> None:
        error = exception_value if exception_value is not None else RuntimeError("unknown failure")
        self._exit(ExitReason.crashed(error))

    def _handle_receive(self, message: Any) -> Any:
        if message is WAKE:  # the inbox was closed while this thread waited on it: the loop sees the stop
            if self._link.killed and self._exit_reason is None:
                self._exit(ExitReason.killed())
            return None
        try:
            return super()._handle_receive(message)
        except self.expected_errors:
            raise
        except Exception as exc:
            if self.let_it_crash:
                self._exit(ExitReason.crashed(exc))
            raise
        except BaseException as exc:  # pykka would stop every actor in the process
            wrapped = FatalHandlerError(exc)
            self._exit(ExitReason.crashed(wrapped))
            raise wrapped from exc
        finally:
            if self._link.killed and self._exit_reason is None:
                self._exit(ExitReason.killed())

    # ---- the single exit path ---------------------------------------------------------------------

    def _exit(self, reason: ExitReason) -> None:
        """Stop, clean up and report; only the first call does anything."""
        if self._exit_reason is not None:
            return
        self._exit_reason = reason
        # Harmless when pykka already did it (stop path); needed for crash() and the ask path.
        ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        try:
            self.on_terminate(reason)
        except BaseException:  # clean-up must not prevent the report
            logger.exception("%s: on_terminate raised (ignored)", self)
        self._answer_undelivered(reason)
        self._link.exit_reason = reason
        self._report(reason)
        self._link.exited.set()

    def _answer_undelivered(self, reason: ExitReason) -> None:
        """Close the inbox; answer each queued ask as pykka does and give each queued tell to the hook."""
        inbox = self.actor_inbox
        if not isinstance(inbox, ClosableInbox):  # pragma: no cover - only if a subclass swapped the inbox
            return
        for envelope in inbox.close(str(self.actor_ref)):
            if envelope.reply_to is not None:
                if isinstance(envelope.message, _ActorStop):
                    envelope.reply_to.set(None)  # a stop asked for while stopping: done
                else:
                    error = ActorDeadError(f"{self.actor_ref} stopped before handling the message")
                    envelope.reply_to.set_exception(exc_info=(ActorDeadError, error, None))
                continue
            try:
                self.on_undelivered(envelope.message, reason)
            except BaseException:  # one bad message must not keep the others from being answered
                logger.exception("%s: on_undelivered raised (ignored)", self)

    def _report(self, reason: ExitReason) -> None:
        parent = self._link.parent
        if parent is None or reason.kind is ExitKind.KILLED:
            return  # the supervisor abandoned us and has already moved on
        with contextlib.suppress(ActorDeadError):  # a dead supervisor: nobody is left to care
            parent.tell(ChildExited(self._link.child_id, self.actor_urn, reason))


A = TypeVar("A", bound=SupervisedActor)
P = ParamSpec("P")
R = TypeVar("R")


def crash_on_error(method: Callable[Concatenate[A, P], R]) -> Callable[Concatenate[A, P], R]:
    """Make one method crash the actor on an unexpected error, even when ``let_it_crash`` is off.

    The asker still receives the error; errors in the class's ``expected_errors`` do not crash.
    """

    @functools.wraps(method)
    def wrapper(self: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except self.expected_errors:
            raise
        except Exception as exc:
            self.crash(exc)

    return wrapper
