"""The supervisor actor (strategies, restart intensity, dynamic children) and its public handle.

Messages this actor handles (all small frozen dataclasses):

* :class:`~supervisors.exits.ChildExited` - a child's report about how it ended (tell);
* :class:`StartChild` / :class:`TerminateChild` - dynamic supervision (ask from outside an actor,
  or tell with a ``reply`` future from inside one: a child never asks its supervisor);
* :class:`RetryRestart` - its own note to retry a restart whose start failed;
* :class:`Sync` - a barrier for callers (replies after everything queued before it).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

import pykka
from pykka import ActorDeadError, ActorRef

from supervisors.actor import ChildLink, SupervisedActor, offering
from supervisors.directory import ChildDirectory, ChildInfo, ChildState, SupervisorStatus, render_tree
from supervisors.errors import (
    AskTimeout,
    ChildAlreadyExists,
    ChildNotFound,
    ChildSpecError,
    ChildStartError,
    SupervisionError,
    SupervisorGaveUp,
    SupervisorNotRunning,
)
from supervisors.exits import ChildExited, ExitReason
from supervisors.names import NamedRef
from supervisors.spec import ChildSpec, Restart, Strategy

__all__ = [
    "RestartIntensity",
    "RetryRestart",
    "StartChild",
    "Supervisor",
    "SupervisorActor",
    "SupervisorConfig",
    "Sync",
    "TerminateChild",
]

logger = logging.getLogger(__name__)


# ---- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start a dynamic child. With ``reply`` set it is meant to be *told*; the future resolves."""

    spec: ChildSpec
    reply: concurrent.futures.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Stop a child (bounded by its shutdown timeout) and forget its spec."""

    child_id: str
    reply: concurrent.futures.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class Sync:
    """Replies once everything sent to the supervisor before it has been handled (a barrier)."""


@dataclass(frozen=True, slots=True)
class RetryRestart:
    """A restart failed to start ``child_id``; try again (``attempt`` makes older notes stale)."""

    child_id: str
    attempt: int


# ---- configuration and bookkeeping -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    name: str
    children: tuple[ChildSpec, ...] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    max_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.max_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and max_seconds > 0")
        ids = [spec.id for spec in self.children]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate child ids in {ids}")


class RestartIntensity:
    """OTP's restart intensity: more than ``max_restarts`` restarts within ``max_seconds`` is too many."""

    def __init__(self, max_restarts: int, max_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        self._stamps: deque[float] = deque()

    def allow(self) -> bool:
        """Record one restart; False when it is one too many."""
        now = self._clock()
        self._stamps.append(now)
        while self._stamps and now - self._stamps[0] > self.max_seconds:
            self._stamps.popleft()
        return len(self._stamps) <= self.max_restarts


@dataclass(eq=False)
class _Child:
    """The supervisor's private record of one child (never shared with another thread)."""

    spec: ChildSpec
    state: ChildState = ChildState.STARTING
    ref: ActorRef[Any] | None = None
    link: ChildLink | None = None
    nested: ChildDirectory | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None
    abandoned: int = 0
    attempt: int = 0
    actor_class: str = field(default="?")

    @property
    def urn(self) -> str | None:
        return self.ref.actor_urn if self.ref is not None else None

    def info(self) -> ChildInfo:
        return ChildInfo(
            child_id=self.spec.id, state=self.state, restart=self.spec.restart,
            actor_class=self.actor_class, ref=self.ref, restarts=self.restarts,
            last_exit=self.last_exit, abandoned=self.abandoned, nested=self.nested,
            shutdown=self.spec.shutdown,
        )


# ---- the actor ------------------------------------------------------------------------------------


class SupervisorActor(SupervisedActor):
    """Starts children in order, restarts them by strategy, stops them in reverse order."""

    expected_errors = (SupervisionError,)

    def __init__(self, config: SupervisorConfig, directory: ChildDirectory | None = None) -> None:
        super().__init__()
        self._config = config
        self._directory = directory if directory is not None else _new_directory(config)
        self._children: dict[str, _Child] = {}
        self._intensity = RestartIntensity(config.max_restarts, config.max_seconds)
        self._gave_up: SupervisorGaveUp | None = None

    @property
    def directory(self) -> ChildDirectory:
        """Thread-safe; the one part of this actor other threads may touch."""
        return self._directory

    # ---- lifecycle ------------------------------------------------------------------------------

    def on_init(self) -> None:
        self._directory.claim(self.actor_urn)
        for spec in self._config.children:
            self._children[spec.id] = _Child(spec)
        self._publish_all()
        for child in list(self._children.values()):
            self._start_child(child)  # a failure propagates: START_FAILED, and on_terminate stops the rest
        self._directory.set_status(SupervisorStatus.RUNNING)

    def on_terminate(self, reason: ExitReason) -> None:
        for child in reversed(list(self._children.values())):
            self._stop_child(child)
            child.state = ChildState.STOPPED
            if child.nested is not None:
                child.nested.release(SupervisorStatus.STOPPED)
        self._publish_all()
        if self._gave_up is not None and self._link.parent is None:
            status = SupervisorStatus.GAVE_UP
        elif reason.abnormal and self._link.parent is not None:
            status = SupervisorStatus.AWAITING_PARENT  # the parent settles it either way
        else:
            status = SupervisorStatus.STOPPED
        self._directory.finish(status, reason)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._on_child_exited(message)
        elif isinstance(message, StartChild):
            return _reply(message.reply, partial(self._start_dynamic, message.spec))
        elif isinstance(message, TerminateChild):
            return _reply(message.reply, partial(self._terminate, message.child_id))
        elif isinstance(message, RetryRestart):
            self._on_retry(message)
        elif isinstance(message, Sync):
            return None
        else:
            return super().on_receive(message)
        return None

    # ---- exits and restarts -----------------------------------------------------------------------

    def _on_child_exited(self, report: ChildExited) -> None:
        child = self._children.get(report.child_id)
        if child is None or child.urn != report.urn:
            logger.debug("%s: stale exit report from %s (%s)", self._config.name, report.child_id, report.urn)
            return
        child.ref, child.link, child.last_exit = None, None, report.reason
        if not child.spec.restart.should_restart(report.reason.abnormal):
            logger.info("%s: child %r ended (%s); not restarted (%s)", self._config.name,
                        child.spec.id, report.reason.describe(), child.spec.restart.value)
            self._retire(child)
            return
        logger.warning("%s: child %r ended (%s); restarting (%s)", self._config.name, child.spec.id,
                       report.reason.describe(), self._config.strategy.value)
        self._restart(child, report.reason)

    def _on_retry(self, note: RetryRestart) -> None:
        child = self._children.get(note.child_id)
        if child is None or child.attempt != note.attempt or child.ref is not None:
            return
        self._restart(child, child.last_exit or ExitReason.crashed(RuntimeError("restart failed")))

    def _restart(self, failed: _Child, reason: ExitReason) -> None:
        if not self._intensity.allow():
            self._give_up(failed, reason)
            return
        group = self._restart_group(failed)
        for child in group:
            child.state = ChildState.RESTARTING
            if child.nested is not None:
                child.nested.hold_for_restart()
        self._publish_all()
        for child in reversed(group):
            self._stop_child(child)  # the failed one is already gone; siblings go in reverse start order
        for child in group:
            if child is not failed and child.spec.restart is Restart.TEMPORARY:
                self._forget(child)  # OTP: a temporary child is never restarted, even as a sibling
        for child in group:
            if child.spec.id not in self._children:
                continue
            try:
                self._start_child(child)
            except ChildStartError as err:
                child.state = ChildState.RESTARTING
                child.last_exit = ExitReason.start_failed(err.__cause__ or err)
                child.attempt += 1
                self._publish(child)
                # Retry through the mailbox (as OTP does), so stops and lookups are not starved.
                self.actor_ref.tell(RetryRestart(child.spec.id, child.attempt))
                return
            child.restarts += 1
            self._publish(child)

    def _restart_group(self, failed: _Child) -> list[_Child]:
        children = list(self._children.values())
        if self._config.strategy is Strategy.ONE_FOR_ALL:
            return children
        if self._config.strategy is Strategy.REST_FOR_ONE:
            return children[children.index(failed):]
        return [failed]

    def _give_up(self, failed: _Child, reason: ExitReason) -> None:
        self._gave_up = SupervisorGaveUp(self._config.name, failed.spec.id, reason.error,
                                         self._config.max_restarts, self._config.max_seconds)
        logger.error("%s", self._gave_up)
        self._exit(ExitReason.crashed(self._gave_up))  # on_terminate stops the others in reverse order

    def _retire(self, child: _Child) -> None:
        """A child that ended and is not restarted."""
        if child.nested is not None:
            gave_up = child.last_exit is not None and isinstance(child.last_exit.error, SupervisorGaveUp)
            child.nested.release(SupervisorStatus.GAVE_UP if gave_up else SupervisorStatus.STOPPED)
        if child.spec.restart is Restart.TEMPORARY:
            self._forget(child)
        else:
            child.state = ChildState.STOPPED
            self._publish(child)

    # ---- dynamic children ---------------------------------------------------------------------------

    def _start_dynamic(self, spec: ChildSpec) -> None:
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.state is not ChildState.STOPPED:
                raise ChildAlreadyExists(spec.id)
            self._forget(existing)
        child = _Child(spec)
        self._children[spec.id] = child
        self._publish(child)
        try:
            self._start_child(child)
        except ChildStartError:
            self._forget(child)
            raise

    def _terminate(self, child_id: str) -> None:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFound(child_id)
        child.state = ChildState.STOPPED
        self._stop_child(child)
        if child.nested is not None:
            child.nested.release(SupervisorStatus.STOPPED)
        self._forget(child)

    # ---- starting and stopping one child -------------------------------------------------------------

    def _start_child(self, child: _Child) -> None:
        """Start ``child`` and wait for its ``on_init``; raises ChildStartError."""
        spec = child.spec
        link = ChildLink(self.actor_ref, spec.id)
        try:
            with offering(link):
                ref = spec.start()
        except Exception as exc:
            raise ChildStartError(spec.id, f"start() raised {exc!r}") from exc
        actor = link.actor
        if actor is None or actor.actor_urn != getattr(ref, "actor_urn", None):
            if isinstance(ref, ActorRef):
                ref.stop(block=False)
            cause = ChildSpecError(f"start() of child {spec.id!r} did not start a SupervisedActor "
                                   "in the supervisor's thread")
            raise ChildStartError(spec.id, str(cause)) from cause
        if not link.started.wait(spec.start_timeout):
            link.kill()
            raise ChildStartError(spec.id, f"on_init did not finish within {spec.start_timeout:g} s")
        if link.start_error is not None:
            raise ChildStartError(spec.id, repr(link.start_error)) from link.start_error
        child.ref, child.link, child.state = ref, link, ChildState.RUNNING
        child.actor_class = type(actor).__name__
        child.nested = actor.directory if isinstance(actor, SupervisorActor) else None
        self._publish(child)

    def _stop_child(self, child: _Child) -> None:
        """Stop ``child`` within its shutdown timeout, or abandon it. Its exit report becomes stale."""
        ref, link = child.ref, child.link
        child.ref, child.link = None, None
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=child.spec.shutdown)
        except pykka.Timeout:
            child.abandoned += 1
            if link is not None:
                link.kill()
            logger.error("%s: child %r ignored stop for %g s; abandoned (its thread may still run)",
                         self._config.name, child.spec.id, child.spec.shutdown)

    def _forget(self, child: _Child) -> None:
        self._children.pop(child.spec.id, None)
        self._directory.remove(child.spec.id)

    def _publish(self, child: _Child) -> None:
        self._directory.publish(child.info())

    def _publish_all(self) -> None:
        self._directory.publish_many([child.info() for child in self._children.values()])


def _reply(reply: concurrent.futures.Future[None] | None, action: Callable[[], None]) -> None:
    """Run a request; with a reply future (tell style) resolve it instead of raising."""
    if reply is None:
        action()
        return
    try:
        action()
    except SupervisionError as err:
        reply.set_exception(err)
    else:
        reply.set_result(None)


def _new_directory(config: SupervisorConfig) -> ChildDirectory:
    return ChildDirectory(config.name, config.strategy, config.max_restarts, config.max_seconds)


# ---- the public handle ----------------------------------------------------------------------------


class Supervisor:
    """A handle on a supervisor: start it, look up children by name, change it at run time, stop it.

    ``Supervisor.start(...)`` runs a top-level supervisor; ``Supervisor.child_spec(...)`` describes
    one to nest under another, and ``parent.supervisor(id)`` returns a handle on it that stays valid
    across its restarts.
    """

    def __init__(self, directory: ChildDirectory, locate: Callable[[float], ActorRef[Any]],
                 link: ChildLink | None = None, *, request_timeout: float = 10.0) -> None:
        self._directory = directory
        self._locate = locate
        self._link = link
        self.request_timeout = request_timeout

    @classmethod
    def start(cls, children: Iterable[ChildSpec] = (), *, strategy: Strategy = Strategy.ONE_FOR_ONE,
              max_restarts: int = 3, max_seconds: float = 5.0, name: str = "supervisor",
              start_timeout: float = 30.0) -> Supervisor:
        """Start a top-level supervisor and all its children in order; returns once they run.

        Raises :class:`ChildStartError` (children already started are stopped again) when a child
        fails to start.
        """
        config = SupervisorConfig(name, tuple(children), strategy, max_restarts, max_seconds)
        directory = _new_directory(config)
        link = ChildLink(None, name)
        with offering(link):
            ref = SupervisorActor.start(config, directory)
        if not link.started.wait(start_timeout):
            link.kill()
            raise ChildStartError(name, f"children did not start within {start_timeout:g} s")
        if link.start_error is not None:
            if isinstance(link.start_error, ChildStartError):
                raise link.start_error
            raise ChildStartError(name, repr(link.start_error)) from link.start_error
        return cls(directory, lambda _timeout: ref, link)

    @staticmethod
    def child_spec(id: str, children: Iterable[ChildSpec] = (), *,
                   strategy: Strategy = Strategy.ONE_FOR_ONE, max_restarts: int = 3,
                   max_seconds: float = 5.0, restart: Restart = Restart.PERMANENT,
                   shutdown: float = 30.0, start_timeout: float = 30.0) -> ChildSpec:
        """A spec for a nested supervisor. Its directory outlives restarts, so names stay valid.

        ``shutdown`` should cover the children's own shutdown timeouts (OTP uses infinity for
        supervisors; we cannot wait forever).
        """
        config = SupervisorConfig(id, tuple(children), strategy, max_restarts, max_seconds)
        directory = _new_directory(config)
        return ChildSpec(id=id, start=partial(SupervisorActor.start, config, directory), restart=restart,
                         shutdown=shutdown, start_timeout=start_timeout)

    # ---- introspection ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._directory.name

    @property
    def directory(self) -> ChildDirectory:
        return self._directory

    @property
    def status(self) -> SupervisorStatus:
        return self._directory.status

    @property
    def exit_reason(self) -> ExitReason | None:
        return self._directory.exit_reason

    @property
    def ref(self) -> ActorRef[Any]:
        """The supervisor actor's current ref."""
        return self._locate(self.request_timeout)

    def which_children(self) -> list[ChildInfo]:
        return self._directory.children()

    def tree(self) -> str:
        return render_tree(self._directory)

    def wait(self, timeout: float) -> ExitReason | None:
        """Wait until the supervisor has stopped or given up; its exit reason, or None on timeout."""
        if self._directory.wait_for(lambda d: d.status.final, timeout):
            return self._directory.exit_reason
        return None

    def sync(self, timeout: float | None = None) -> None:
        """Return once the supervisor has handled everything sent to it before (exit reports too)."""
        self._request(Sync(), timeout, 0.0)

    # ---- names ------------------------------------------------------------------------------------

    def child(self, child_id: str, *, lookup_timeout: float = 2.0) -> NamedRef:
        """A stable handle on a child; it follows restarts."""
        return NamedRef(self._directory, child_id, lookup_timeout=lookup_timeout)

    def supervisor(self, child_id: str) -> Supervisor:
        """A handle on a nested supervisor, valid across its restarts."""
        info = self._directory.get(child_id)
        if info is None:
            raise ChildNotFound(child_id)
        if info.nested is None:
            raise ChildSpecError(f"child {child_id!r} is not a supervisor")
        return Supervisor(info.nested, self.child(child_id).resolve, request_timeout=self.request_timeout)

    # ---- dynamic children -------------------------------------------------------------------------

    def start_child(self, spec: ChildSpec, *, timeout: float | None = None) -> NamedRef:
        """Start a child at run time and wait for its ``on_init``; raises ChildStartError on failure."""
        self._request(StartChild(spec), timeout, spec.start_timeout)
        return self.child(spec.id)

    def start_child_nowait(self, spec: ChildSpec) -> concurrent.futures.Future[None]:
        """The form for actors (which never ask their supervisor): tell, and get a future."""
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._tell(StartChild(spec, reply), reply)
        return reply

    def terminate_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """Stop a child (bounded by its shutdown timeout) and remove it."""
        info = self._directory.get(child_id)
        self._request(TerminateChild(child_id), timeout, info.shutdown if info is not None else 0.0)

    def terminate_child_nowait(self, child_id: str) -> concurrent.futures.Future[None]:
        reply: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._tell(TerminateChild(child_id, reply), reply)
        return reply

    # ---- stopping ---------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the children in reverse order, then the supervisor. False if it took longer than
        ``timeout`` (then it is abandoned: daemon threads never keep the process alive).

        On a *nested* supervisor this is an ordinary stop as seen by its parent, which restarts it
        if it is permanent; use the parent's ``terminate_child`` to remove it for good.
        """
        try:
            ref = self._locate(min(timeout, self.request_timeout))
        except SupervisionError:
            return True
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            if self._link is not None:
                self._link.kill()
            logger.error("supervisor %r did not stop within %g s; abandoned", self.name, timeout)
            return False
        return True

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.status.value}>"

    # ---- plumbing ---------------------------------------------------------------------------------

    def _request(self, message: Any, timeout: float | None, extra: float) -> None:
        wait = (self.request_timeout + extra) if timeout is None else timeout
        try:
            ref = self._locate(min(wait, self.request_timeout))
        except SupervisionError as err:
            raise SupervisorNotRunning(f"supervisor {self.name!r} is not running: {err}") from err
        try:
            ref.ask(message, block=True, timeout=wait)
        except ActorDeadError as err:
            raise SupervisorNotRunning(f"supervisor {self.name!r} is not running") from err
        except pykka.Timeout:
            raise AskTimeout(self.name, wait) from None

    def _tell(self, message: Any, reply: concurrent.futures.Future[None]) -> None:
        try:
            self._locate(self.request_timeout).tell(message)
        except (ActorDeadError, SupervisionError) as err:
            reply.set_exception(SupervisorNotRunning(f"supervisor {self.name!r} is not running: {err}"))
