"""Stable names, dynamic children, a child that ignores stop, and start_child from inside an actor."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from functools import partial
from typing import Any

import pykka
import pytest

from supervisors import (
    AskTimeout,
    ChildAlreadyExists,
    ChildNotFound,
    ChildNotRunning,
    ChildSpec,
    ChildStartError,
    ChildState,
    NameLookupTimeout,
    Restart,
    SupervisedActor,
    Supervisor,
    SupervisorNotRunning,
)
from tests.supervisors.actors import EventLog, Worker, wait_until, worker_spec


def test_named_ref_follows_restarts(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "a")]) as sup:
        a = sup.child("a")
        first = a.resolve()
        assert a.ask("ping", timeout=1.0) == 1
        first.tell("crash")
        # The name now reaches the replacement (waiting briefly while the restart happens).
        assert a.ask("ping", timeout=2.0) == 1
        assert a.resolve().actor_urn != first.actor_urn
        a.tell("ping")
        assert a.ask("ping", timeout=1.0) == 3


def test_named_tell_during_restart_is_delivered_to_the_replacement(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "a")]) as sup:
        a = sup.child("a")
        a.resolve().ask("stop_self", timeout=1.0)  # dead; the supervisor restarts it
        a.tell("ping")  # resolves past the dead incarnation
        assert a.ask("ping", timeout=2.0) == 2


def test_lookup_waits_at_most_its_bound(log: EventLog) -> None:
    attempts = 0

    def start() -> pykka.ActorRef[Any]:
        nonlocal attempts
        attempts += 1
        return Worker.start(log, "slow", start_delay=0.0 if attempts == 1 else 0.6)

    with Supervisor.start([ChildSpec("slow", start)]) as sup:
        name = sup.child("slow", lookup_timeout=0.1)
        name.resolve().tell("crash")
        began = time.monotonic()
        with pytest.raises(NameLookupTimeout):
            name.ask("ping", timeout=0.15)
        assert time.monotonic() - began < 0.5
        # A longer wait sees the replacement.
        assert sup.child("slow", lookup_timeout=3.0).ask("ping", timeout=3.0) == 1


def test_lookup_fails_fast_when_waiting_cannot_help(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "t", Restart.TRANSIENT)]) as sup:
        with pytest.raises(ChildNotFound):
            sup.child("nobody").resolve()
        sup.child("t").ask("stop_self", timeout=1.0)
        sup.sync(timeout=2.0)
        began = time.monotonic()
        with pytest.raises(ChildNotRunning):
            sup.child("t", lookup_timeout=5.0).ask("ping", timeout=5.0)
        assert time.monotonic() - began < 0.5
    with pytest.raises(ChildNotRunning, match="stopped"):
        sup.child("t").resolve()


def test_ask_timeout_is_typed(log: EventLog) -> None:
    release = threading.Event()
    with Supervisor.start([worker_spec(log, "a")]) as sup:
        sup.child("a").tell(("block", release))
        with pytest.raises(AskTimeout):
            sup.child("a").ask("ping", timeout=0.1)
        release.set()


def test_dynamic_children(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "static")]) as sup:
        c1 = sup.start_child(worker_spec(log, "c1", Restart.TEMPORARY))
        sup.start_child(worker_spec(log, "c2"))
        assert c1.ask("ping", timeout=1.0) == 1
        assert [i.child_id for i in sup.which_children()] == ["static", "c1", "c2"]
        with pytest.raises(ChildAlreadyExists):
            sup.start_child(worker_spec(log, "c1"))
        sup.terminate_child("c1")
        assert [i.child_id for i in sup.which_children()] == ["static", "c2"]
        with pytest.raises(ChildNotFound):
            sup.terminate_child("c1")
        failing = threading.Event()
        failing.set()
        with pytest.raises(ChildStartError):
            sup.start_child(worker_spec(log, "bad", fail_start=failing))
        assert sup.directory.get("bad") is None
        assert sup.child("static").ask("ping", timeout=1.0) == 1  # the supervisor is unharmed
        log.clear()
    assert log.events() == [("stop", "c2"), ("stop", "static")]
    with pytest.raises(SupervisorNotRunning):
        sup.start_child(worker_spec(log, "late"))


def test_a_stopped_transient_child_can_be_started_again(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "t", Restart.TRANSIENT)]) as sup:
        sup.child("t").ask("stop_self", timeout=1.0)
        sup.sync(timeout=2.0)
        assert sup.directory.get("t").state is ChildState.STOPPED  # type: ignore[union-attr]
        sup.start_child(worker_spec(log, "t", Restart.TRANSIENT))
        assert sup.child("t").ask("ping", timeout=1.0) == 1


class Spawner(SupervisedActor):
    """Starts a sibling through its supervisor without asking it (tell + future)."""

    def __init__(self, log: EventLog, supervisor: list[Supervisor]) -> None:
        super().__init__()
        self.log = log
        self.supervisor = supervisor

    def on_receive(self, message: Any) -> Any:
        if message == "spawn":
            return self.supervisor[0].start_child_nowait(worker_spec(self.log, "spawned"))
        return None


def test_start_child_from_inside_an_actor(log: EventLog) -> None:
    holder: list[Supervisor] = []
    with Supervisor.start([ChildSpec("spawner", partial(Spawner.start, log, holder))]) as sup:
        holder.append(sup)
        reply: concurrent.futures.Future[None] = sup.child("spawner").ask("spawn", timeout=1.0)
        assert reply.result(timeout=2.0) is None
        assert sup.child("spawned").ask("ping", timeout=1.0) == 1
        duplicate = sup.child("spawner").ask("spawn", timeout=1.0)
        assert isinstance(duplicate.exception(timeout=2.0), ChildAlreadyExists)


class Stubborn(SupervisedActor):
    """Blocks in a handler and so ignores stop requests until released."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.release.wait(10.0)
        return "done"


def test_a_child_that_ignores_stop_is_abandoned_not_waited_on(log: EventLog) -> None:
    release = threading.Event()
    spec = ChildSpec("stubborn", partial(Stubborn.start, release), shutdown=0.2)
    sup = Supervisor.start([worker_spec(log, "first"), spec, worker_spec(log, "last")])
    stubborn = sup.child("stubborn").resolve()
    stubborn.tell("block")
    queued = stubborn.ask("after", block=False)
    began = time.monotonic()
    assert sup.stop(timeout=5.0) is True
    assert 0.2 <= time.monotonic() - began < 1.5
    info = sup.directory.get("stubborn")
    assert info is not None and info.abandoned == 1
    assert "abandoned=1" in sup.tree()
    assert log.events()[-2:] == [("stop", "last"), ("stop", "first")]  # the others still stopped in order
    assert not stubborn.is_alive()
    release.set()
    with pytest.raises(pykka.ActorDeadError):  # the abandoned actor handles nothing more
        queued.get(timeout=2.0)
    assert wait_until(lambda: not any(t.name.startswith("Stubborn-") for t in threading.enumerate()))


def test_a_supervisor_that_takes_too_long_to_stop_is_abandoned(log: EventLog) -> None:
    release = threading.Event()
    spec = ChildSpec("stubborn", partial(Stubborn.start, release), shutdown=2.0)
    sup = Supervisor.start([spec])
    sup.child("stubborn").tell("block")
    began = time.monotonic()
    assert sup.stop(timeout=0.2) is False
    assert time.monotonic() - began < 1.0
    release.set()
    assert sup.wait(timeout=3.0) is not None


class Plain(pykka.ThreadingActor):
    use_daemon_thread = True


def test_a_spec_must_start_a_supervised_actor(log: EventLog) -> None:
    started: list[pykka.ActorRef[Any]] = []

    def start_plain() -> pykka.ActorRef[Any]:
        ref = Plain.start()
        started.append(ref)
        return ref

    def explode() -> pykka.ActorRef[Any]:
        raise OSError("factory failed")

    with Supervisor.start([worker_spec(log, "ok")]) as sup:
        with pytest.raises(ChildStartError, match="did not start a SupervisedActor"):
            sup.start_child(ChildSpec("plain", start_plain))
        assert wait_until(lambda: not started[0].is_alive())  # not left running unsupervised
        with pytest.raises(ChildStartError) as caught:
            sup.start_child(ChildSpec("explode", explode))
        assert isinstance(caught.value.__cause__, OSError)
        assert [info.child_id for info in sup.which_children()] == ["ok"]
