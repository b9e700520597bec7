"""Restart intensity, giving up, escalation through three levels, failures in on_init."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from supervisors import (
    ChildSpec,
    ChildStartError,
    ChildState,
    Restart,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    SupervisorStatus,
)
from tests.supervisors.actors import EventLog, Worker, worker_spec


def test_intensity_window() -> None:
    now = [0.0]
    intensity = RestartIntensity(2, 5.0, clock=lambda: now[0])
    assert intensity.allow()
    assert intensity.allow()
    assert not intensity.allow()  # a third restart within 5 s
    now[0] = 100.0
    assert intensity.allow()  # old restarts fell out of the window


def test_zero_restarts_gives_up_on_the_first_failure(log: EventLog) -> None:
    sup = Supervisor.start([worker_spec(log, "a")], max_restarts=0)
    sup.child("a").resolve().tell("crash")
    reason = sup.wait(timeout=3.0)
    assert reason is not None
    assert isinstance(reason.error, SupervisorGaveUp)
    assert sup.status is SupervisorStatus.GAVE_UP


def test_crash_storm_exceeds_intensity_and_stops_everything(log: EventLog) -> None:
    sup = Supervisor.start([worker_spec(log, n) for n in "abc"], max_restarts=3, max_seconds=5.0)
    for crashes in range(1, 4):
        sup.child("b").resolve(2.0).tell("crash")
        starts = crashes + 1
        assert log.wait_for(lambda events: events.count(("start", "b")) == starts)  # noqa: B023
        sup.sync(timeout=2.0)
    assert sup.status is SupervisorStatus.RUNNING
    assert sup.directory.get("b").restarts == 3  # type: ignore[union-attr]
    log.clear()
    sup.child("b").resolve(2.0).tell("crash")
    reason = sup.wait(timeout=3.0)
    assert reason is not None and isinstance(reason.error, SupervisorGaveUp)
    assert reason.error.child_id == "b"
    assert isinstance(reason.error.child_error, ValueError)
    assert log.events() == [("stop", "b"), ("stop", "c"), ("stop", "a")]  # the rest in reverse order
    assert all(info.state is ChildState.STOPPED for info in sup.which_children())
    assert "gave_up" in sup.tree()


def test_initial_start_failure_stops_the_started_children(log: EventLog) -> None:
    failing = threading.Event()
    failing.set()
    with pytest.raises(ChildStartError) as caught:
        Supervisor.start([worker_spec(log, "a"), worker_spec(log, "b"),
                          worker_spec(log, "c", fail_start=failing), worker_spec(log, "d")])
    assert caught.value.child_id == "c"
    assert isinstance(caught.value.__cause__, RuntimeError)
    # c's on_terminate runs too (it is the one clean-up hook for every exit), then b and a stop.
    assert log.events() == [("start", "a"), ("start", "b"), ("stop", "c"), ("stop", "b"), ("stop", "a")]


def test_on_init_failure_during_restart_is_retried_then_escalates(log: EventLog) -> None:
    failing = threading.Event()
    sup = Supervisor.start([worker_spec(log, "a", fail_start=failing)], max_restarts=3, max_seconds=5.0)
    failing.set()
    sup.child("a").resolve().tell("crash")
    reason = sup.wait(timeout=3.0)
    assert reason is not None and isinstance(reason.error, SupervisorGaveUp)
    info = sup.directory.get("a")
    assert info is not None and info.last_exit is not None
    assert "cannot start" in info.last_exit.describe()


def test_on_init_failure_during_restart_then_recovery(log: EventLog) -> None:
    attempts = 0

    def start() -> pykka.ActorRef[Any]:
        nonlocal attempts
        attempts += 1
        fail = threading.Event()
        if attempts in (2, 3):  # the first two restarts fail in on_init, the third works
            fail.set()
        return Worker.start(log, "a", fail_start=fail)

    with Supervisor.start([ChildSpec("a", start)], max_restarts=5) as sup:
        sup.child("a").resolve().tell("crash")
        assert sup.child("a", lookup_timeout=3.0).ask("ping", timeout=3.0) == 1
        assert attempts == 4
        info = sup.directory.get("a")
        assert info is not None and info.restarts == 1 and info.state is ChildState.RUNNING
        assert sup.status is SupervisorStatus.RUNNING


def test_start_timeout_counts_as_a_failed_start(log: EventLog) -> None:
    slow = ChildSpec("slow", lambda: Worker.start(log, "slow", start_delay=0.5), start_timeout=0.1)
    with pytest.raises(ChildStartError, match="did not finish"):
        Supervisor.start([slow])


def test_escalation_through_three_levels(log: EventLog) -> None:
    failing = threading.Event()
    level3 = Supervisor.child_spec("level3", [worker_spec(log, "leaf", fail_start=failing)],
                                   max_restarts=1, max_seconds=5.0)
    level2 = Supervisor.child_spec("level2", [level3, worker_spec(log, "l2-worker")],
                                   strategy=Strategy.REST_FOR_ONE, max_restarts=1, max_seconds=5.0)
    top = Supervisor.start([worker_spec(log, "top-worker"), level2], max_restarts=1, max_seconds=5.0,
                           name="level1")
    leaf = top.supervisor("level2").supervisor("level3").child("leaf")
    assert leaf.ask("ping", timeout=2.0) == 1
    failing.set()  # from now on the leaf cannot start again
    leaf.resolve().tell("crash")
    reason = top.wait(timeout=5.0)
    assert reason is not None and isinstance(reason.error, SupervisorGaveUp)
    assert reason.error.child_id == "level2"
    assert top.status is SupervisorStatus.GAVE_UP
    tree = top.tree()
    assert "level1" in tree and "level2" in tree and "level3" in tree and "leaf" in tree
    # Every actor of the tree ended; the last thing stopped was the first started.
    assert log.events()[-1] == ("stop", "top-worker")


def test_a_nested_supervisor_restart_keeps_names_valid(log: EventLog) -> None:
    inner = Supervisor.child_spec("inner", [worker_spec(log, "x")], max_restarts=0)
    with Supervisor.start([inner], max_restarts=3) as top:
        x = top.supervisor("inner").child("x", lookup_timeout=3.0)
        assert x.ask("ping", timeout=2.0) == 1
        x.resolve().tell("crash")  # inner gives up at once; top restarts inner (and x with it)
        assert x.ask("ping", timeout=3.0) == 1
        top.sync(timeout=2.0)  # x serves before its grandparent has recorded the restart
        info = top.directory.get("inner")
        assert info is not None and info.restarts == 1
        assert top.supervisor("inner").status is SupervisorStatus.RUNNING


def test_temporary_service_tree_giving_up_leaves_the_parent_alone(log: EventLog) -> None:
    service = Supervisor.child_spec("service", [worker_spec(log, "client")], max_restarts=0,
                                    restart=Restart.TEMPORARY)
    with Supervisor.start([worker_spec(log, "session"), service]) as top:
        nested = top.supervisor("service")
        nested.child("client").resolve().tell("crash")
        assert nested.wait(timeout=3.0) is not None
        assert nested.status is SupervisorStatus.GAVE_UP
        top.sync(timeout=2.0)
        assert top.directory.get("service") is None
        assert top.status is SupervisorStatus.RUNNING
        assert top.child("session").ask("ping", timeout=2.0) == 1
