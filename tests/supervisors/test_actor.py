"""SupervisedActor: every way of ending is reported exactly once, and no BaseException escapes."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from supervisors import (
    ChildLink,
    ExitKind,
    ExitReason,
    FatalHandlerError,
    SupervisedActor,
    crash_on_error,
)
from supervisors.actor import offering
from tests.supervisors.actors import ReportCollector, wait_until


class Probe(SupervisedActor):
    """Keeps state across messages so a test can see whether it survived."""

    expected_errors = (KeyError,)

    def __init__(self, fail_start: BaseException | None = None) -> None:
        super().__init__()
        self.fail_start = fail_start
        self.terminations: list[ExitReason] = []
        self.value = 0

    def on_init(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start

    def on_terminate(self, reason: ExitReason) -> None:
        self.terminations.append(reason)

    def on_receive(self, message: Any) -> Any:
        if message == "inc":
            self.value += 1
            return self.value
        if message == "value_error":
            self.value += 100  # the half-done update that must not survive
            raise ValueError("bug")
        if message == "key_error":
            raise KeyError("expected")
        if message == "system_exit":
            raise SystemExit(1)
        if message == "keyboard":
            raise KeyboardInterrupt
        if message == "crash":
            self.crash(RuntimeError("asked to crash"))
        if message == "terminations":
            return list(self.terminations)
        return None


def start_linked(actor_cls: type[Probe], *args: Any) -> tuple[pykka.ActorRef[Any], pykka.ActorRef[Any], Probe]:
    parent = ReportCollector.start()
    link = ChildLink(parent, "probe")
    with offering(link):
        ref = actor_cls.start(*args)
    assert link.actor is not None
    assert link.started.wait(2.0)
    return parent, ref, link.actor  # type: ignore[return-value]


def reports(parent: pykka.ActorRef[Any]) -> list[Any]:
    result: list[Any] = parent.ask("reports", block=True, timeout=2.0)
    return result


def finish(parent: pykka.ActorRef[Any], actor: Probe, expected: ExitKind) -> None:
    assert actor._link.exited.wait(2.0)
    assert wait_until(lambda: len(reports(parent)) >= 1)
    got = reports(parent)
    assert len(got) == 1, got
    assert got[0].reason.kind is expected
    assert got[0].urn == actor.actor_urn
    assert len(actor.terminations) == 1
    assert actor.terminations[0].kind is expected
    parent.stop(timeout=2.0)


def test_normal_stop_is_reported_once() -> None:
    parent, ref, actor = start_linked(Probe)
    assert ref.stop(timeout=2.0) is True
    assert ref.stop(timeout=2.0) is False
    finish(parent, actor, ExitKind.NORMAL)


def test_tell_crash_is_reported_once() -> None:
    parent, ref, actor = start_linked(Probe)
    ref.tell("value_error")
    finish(parent, actor, ExitKind.CRASHED)
    assert isinstance(actor.terminations[0].error, ValueError)


def test_ask_crash_replies_and_crashes() -> None:
    parent, ref, actor = start_linked(Probe)
    queued = ref.ask("inc", block=False)
    assert queued.get(timeout=2.0) == 1
    failing = ref.ask("value_error", block=False)
    behind = ref.ask("inc", block=False)  # queued behind the crash: must not see corrupt state
    with pytest.raises(ValueError, match="bug"):
        failing.get(timeout=2.0)
    with pytest.raises(pykka.ActorDeadError):
        behind.get(timeout=2.0)
    finish(parent, actor, ExitKind.CRASHED)
    assert not ref.is_alive()


def test_expected_error_keeps_the_actor() -> None:
    parent, ref, actor = start_linked(Probe)
    ref.ask("inc", timeout=2.0)
    with pytest.raises(KeyError):
        ref.ask("key_error", timeout=2.0)
    assert ref.ask("inc", timeout=2.0) == 2
    assert reports(parent) == []
    ref.stop(timeout=2.0)
    finish(parent, actor, ExitKind.NORMAL)


def test_crash_helper() -> None:
    parent, ref, actor = start_linked(Probe)
    with pytest.raises(RuntimeError, match="asked to crash"):
        ref.ask("crash", timeout=2.0)
    finish(parent, actor, ExitKind.CRASHED)


@pytest.mark.parametrize("message", ["system_exit", "keyboard"])
def test_base_exception_crashes_only_this_actor(message: str) -> None:
    bystander = ReportCollector.start()  # a plain pykka actor: pykka's stop_all would kill it
    parent, ref, actor = start_linked(Probe)
    with pytest.raises(FatalHandlerError) as caught:
        ref.ask(message, timeout=2.0)
    assert isinstance(caught.value.original, SystemExit | KeyboardInterrupt)
    finish(parent, actor, ExitKind.CRASHED)
    assert bystander.is_alive()
    assert bystander.ask("reports", timeout=2.0) == []
    bystander.stop(timeout=2.0)


def test_base_exception_on_tell_path() -> None:
    bystander = ReportCollector.start()
    parent, ref, actor = start_linked(Probe)
    ref.tell("system_exit")
    finish(parent, actor, ExitKind.CRASHED)
    assert isinstance(actor.terminations[0].error, FatalHandlerError)
    assert bystander.is_alive()
    bystander.stop(timeout=2.0)


@pytest.mark.parametrize("error", [RuntimeError("no"), SystemExit(2)])
def test_start_failure_is_reported_once(error: BaseException) -> None:
    parent, ref, actor = start_linked(Probe, error)
    assert actor._link.start_error is error
    finish(parent, actor, ExitKind.START_FAILED)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("inc", timeout=1.0)


def test_standalone_actor_has_no_parent_and_still_cleans_up() -> None:
    ref = Probe.start()
    assert ref.ask("inc", timeout=2.0) == 1
    ref.stop(timeout=2.0)
    assert not ref.is_alive()


def test_overriding_pykka_hooks_is_refused() -> None:
    with pytest.raises(TypeError, match="on_init"):
        class Bad(SupervisedActor):
            def on_start(self) -> None:  # type: ignore[misc]
                pass


class Careful(SupervisedActor):
    """pykka semantics for asks, except for the method marked crash_on_error."""

    let_it_crash = False

    def __init__(self) -> None:
        super().__init__()
        self.value = 0

    def tolerant(self) -> int:
        self.value += 1
        raise ValueError("kept")

    @crash_on_error
    def strict(self) -> int:
        self.value += 1
        raise ValueError("crash")

    def read(self) -> int:
        return self.value


def test_crash_on_error_decorator() -> None:
    ref = Careful.start()
    proxy = ref.proxy()
    with pytest.raises(ValueError, match="kept"):
        proxy.tolerant().get(timeout=2.0)
    assert proxy.read().get(timeout=2.0) == 1
    with pytest.raises(ValueError, match="crash"):
        proxy.strict().get(timeout=2.0)
    assert wait_until(lambda: not ref.is_alive())


def test_kill_switch_ends_a_stuck_actor_after_its_handler() -> None:
    parent, ref, actor = start_linked(Probe)
    release = threading.Event()

    class Stuck:
        pass

    def block() -> None:
        release.wait(5.0)

    actor.on_receive = lambda message: block() if isinstance(message, Stuck) else None  # type: ignore[method-assign]
    ref.tell(Stuck())
    queued = ref.ask("inc", block=False)
    actor._link.kill()
    assert not ref.is_alive()
    release.set()
    with pytest.raises(pykka.ActorDeadError):
        queued.get(timeout=2.0)
    assert actor._link.exited.wait(2.0)
    assert actor.terminations[0].kind is ExitKind.KILLED
    assert reports(parent) == []  # nobody is told about an abandoned actor: its supervisor moved on
    parent.stop(timeout=2.0)
