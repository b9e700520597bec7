"""Strategies, restart types, stale reports, concurrent crashes, queued messages at stop."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pykka
import pytest

from supervisors import (
    ChildExited,
    ChildState,
    ExitReason,
    Restart,
    Strategy,
    Supervisor,
    SupervisorStatus,
)
from tests.supervisors.actors import EventLog, worker_spec


def urns(sup: Supervisor) -> dict[str, str | None]:
    return {info.child_id: info.ref.actor_urn if info.ref else None for info in sup.which_children()}


def restarts(sup: Supervisor) -> dict[str, int]:
    return {info.child_id: info.restarts for info in sup.which_children()}


def crash(sup: Supervisor, child_id: str) -> None:
    with pytest.raises(ValueError):
        sup.child(child_id).ask("crash", timeout=2.0)
    sup.sync(timeout=5.0)


@pytest.mark.parametrize(
    ("strategy", "restarted", "events"),
    [
        (Strategy.ONE_FOR_ONE, {"b"}, [("stop", "b"), ("start", "b")]),
        (Strategy.ONE_FOR_ALL, {"a", "b", "c"},
         [("stop", "b"), ("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]),
        (Strategy.REST_FOR_ONE, {"b", "c"}, [("stop", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]),
    ],
)
def test_strategy(log: EventLog, strategy: Strategy, restarted: set[str], events: list[tuple[str, str]]) -> None:
    with Supervisor.start([worker_spec(log, n) for n in "abc"], strategy=strategy) as sup:
        assert log.events() == [("start", "a"), ("start", "b"), ("start", "c")]
        for name in "abc":
            sup.child(name).ask("ping", timeout=2.0)
        before = urns(sup)
        log.clear()
        crash(sup, "b")
        after = urns(sup)
        assert {n for n in "abc" if before[n] != after[n]} == restarted
        assert log.events() == events
        assert restarts(sup) == {n: int(n in restarted) for n in "abc"}
        for name in "abc":  # restarted children start from fresh state, the others kept theirs
            assert sup.child(name).ask("ping", timeout=2.0) == (1 if name in restarted else 2)
        log.clear()
    assert log.events() == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    assert sup.status is SupervisorStatus.STOPPED


@pytest.mark.parametrize(
    ("restart", "how", "expected_state", "restarted"),
    [
        (Restart.PERMANENT, "crash", ChildState.RUNNING, True),
        (Restart.PERMANENT, "stop_self", ChildState.RUNNING, True),
        (Restart.TRANSIENT, "crash", ChildState.RUNNING, True),
        (Restart.TRANSIENT, "stop_self", ChildState.STOPPED, False),
        (Restart.TEMPORARY, "crash", None, False),
        (Restart.TEMPORARY, "stop_self", None, False),
    ],
)
def test_restart_types(log: EventLog, restart: Restart, how: str,
                       expected_state: ChildState | None, restarted: bool) -> None:
    with Supervisor.start([worker_spec(log, "w", restart), worker_spec(log, "other")]) as sup:
        first = sup.child("w").resolve()
        if how == "crash":
            first.tell("crash")
        else:
            first.ask("stop_self", timeout=2.0)
        assert log.wait_for(lambda events: ("stop", "w") in events)
        sup.sync(timeout=5.0)
        info = sup.directory.get("w")
        if expected_state is None:
            assert info is None  # temporary children are forgotten
        else:
            assert info is not None
            assert info.state is expected_state
            assert info.restarts == int(restarted)
            assert info.last_exit is not None
            assert info.last_exit.abnormal == (how == "crash")
        assert (log.events().count(("start", "w")) == 2) == restarted
        assert sup.child("other").ask("ping", timeout=2.0) == 1


def test_stale_exit_reports_are_ignored(log: EventLog) -> None:
    with Supervisor.start([worker_spec(log, "a")]) as sup:
        before = urns(sup)
        sup.ref.tell(ChildExited("a", "urn:uuid:not-the-current-one", ExitReason.crashed(ValueError("old"))))
        sup.ref.tell(ChildExited("nobody", "urn:uuid:x", ExitReason.crashed(ValueError("unknown"))))
        sup.sync(timeout=2.0)
        assert urns(sup) == before
        assert restarts(sup) == {"a": 0}


@pytest.mark.parametrize("strategy", list(Strategy))
def test_concurrent_crashes_of_siblings(log: EventLog, strategy: Strategy) -> None:
    names = ["a", "b", "c", "d"]
    with Supervisor.start([worker_spec(log, n) for n in names], strategy=strategy, max_restarts=10) as sup:
        refs = [sup.child(n).resolve() for n in names]
        barrier = threading.Barrier(len(refs))

        def crash_now(ref: pykka.ActorRef[Any]) -> None:
            barrier.wait()
            # A group restart triggered by a faster sibling may already have stopped this one.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell("crash")

        threads = [threading.Thread(target=crash_now, args=(ref,)) for ref in refs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.wait_for(lambda events: all(("stop", n) in events for n in names))
        sup.sync(timeout=5.0)
        sup.sync(timeout=5.0)  # a group restart may have queued retries; let them settle
        assert all(info.state is ChildState.RUNNING for info in sup.which_children())
        assert all(sup.child(n).ask("ping", timeout=2.0) == 1 for n in names)
        counts = restarts(sup)
        if strategy is Strategy.REST_FOR_ONE:
            # Depends on which report comes first, but a restart of one child always restarts
            # every later one, and reports from replaced incarnations are ignored.
            ordered = [counts[n] for n in names]
            assert ordered == sorted(ordered)
            assert ordered[0] >= 1 and ordered[-1] <= len(names)
        else:
            # one_for_all: the first report restarts everyone; the other three are stale.
            assert counts == dict.fromkeys(names, 1)
        assert sup.status is SupervisorStatus.RUNNING


def test_stop_while_messages_are_queued(log: EventLog) -> None:
    sup = Supervisor.start([worker_spec(log, "a"), worker_spec(log, "b")])
    ref = sup.child("a").resolve()
    for _ in range(200):
        ref.tell("ping")
    futures = [ref.ask("ping", block=False) for _ in range(50)]
    assert sup.stop(timeout=5.0) is True
    # Everything queued before the stop was handled (pykka's stop is ordered after them).
    assert [f.get(timeout=2.0) for f in futures] == list(range(201, 251))
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("ping", timeout=1.0)
    assert log.events()[-2:] == [("stop", "b"), ("stop", "a")]
