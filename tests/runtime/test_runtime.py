"""Runtime: lazy shared instance, slots, service supervisors, ordered and bounded shutdown."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from supervisors import ChildSpec, Restart, SupervisedActor, SupervisorStatus
from tests.supervisors.actors import EventLog, wait_until, worker_spec
from tinker_actors.runtime import ROOT_SLOTS, PlaceholderActor, Runtime, RuntimeStoppedError
from tinker_actors.runtime.slots import placeholder_spec, register_slot, registered_slots, unregister_slot


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture(autouse=True)
def _no_global_runtime_left() -> Iterator[None]:
    yield
    current = Runtime._current
    if current is not None:
        current.shutdown(2.0)
        Runtime._current = None


class SlotActor(SupervisedActor):
    def __init__(self, log: EventLog, slot: str, runtime: Runtime) -> None:
        super().__init__()
        self.log = log
        self.slot = slot
        self.loop_running_at_stop: bool | None = None
        self.runtime = runtime

    def on_init(self) -> None:
        self.log.add("start", self.slot)

    def on_terminate(self, reason: Any) -> None:
        # The IoLoop must outlive the tree so actors can still flush through it while stopping.
        if self.runtime.ioloop.running:
            self.log.add("stop", self.slot)
        else:
            self.log.add("stop-without-loop", self.slot)

    def on_receive(self, message: Any) -> Any:
        return (self.slot, message)


PLACEHOLDERS: dict[str, Any] = {slot: (lambda rt, slot=slot: placeholder_spec(slot)) for slot in ROOT_SLOTS}
"""Keeps these tests independent of the actors other modules register for the slots."""


def slot_factories(log: EventLog) -> dict[str, Any]:
    return {
        slot: (lambda rt, slot=slot: ChildSpec(slot, partial(SlotActor.start, log, slot, rt)))
        for slot in ROOT_SLOTS
    }


def test_scoped_runtime_has_the_root_tree_with_placeholders() -> None:
    with Runtime.scoped(slots=PLACEHOLDERS) as rt:
        assert Runtime.get() is rt
        assert rt.ioloop.running
        tree = rt.tree()
        assert tree.splitlines()[0] == "IoLoop running"
        for slot in ROOT_SLOTS:
            assert f"{slot}: PlaceholderActor running permanent restarts=0" in tree
        assert rt.session_manager.ask("anything", timeout=1.0) is None
        assert rt.root.which_children()[0].actor_class == PlaceholderActor.__name__
    assert rt.stopped and not rt.ioloop.running
    assert rt.root.status is SupervisorStatus.STOPPED


def test_slots_come_from_the_registry(log: EventLog) -> None:
    seen: list[Runtime] = []

    def factory(rt: Runtime) -> ChildSpec:
        seen.append(rt)
        return ChildSpec("telemetry_reporter", partial(SlotActor.start, log, "telemetry_reporter", rt))

    previous = registered_slots().get("telemetry_reporter")  # the real reporter, when telemetry is imported
    register_slot("telemetry_reporter", factory)
    try:
        with Runtime.scoped() as rt:
            assert seen == [rt]
            assert rt.telemetry_reporter.ask("hello", timeout=1.0) == ("telemetry_reporter", "hello")
        overridden = {**PLACEHOLDERS, "telemetry_reporter": PLACEHOLDERS["telemetry_reporter"]}
        with Runtime.scoped(slots=overridden) as rt:  # explicit overrides win over the registry
            assert seen == [seen[0]]
            assert rt.telemetry_reporter.ask("hello", timeout=1.0) is None
    finally:
        unregister_slot("telemetry_reporter")
        if previous is not None:  # leave the registry as other tests (and the SDK) expect it
            register_slot("telemetry_reporter", previous)
    with pytest.raises(ValueError, match="unknown root slot"):
        register_slot("metrics", factory)


def test_a_slot_spec_must_carry_the_slot_name(log: EventLog) -> None:
    bad = {"session_manager": lambda rt: worker_spec(log, "not-the-slot")}
    with pytest.raises(ValueError, match="session_manager"), Runtime.scoped(slots=bad):
        pass


def test_shutdown_stops_services_then_slots_in_reverse_then_the_loop(log: EventLog) -> None:
    with Runtime.scoped(slots=slot_factories(log)) as rt:
        first = rt.start_service_supervisor([worker_spec(log, "service-client")])
        second = rt.start_service_supervisor([worker_spec(log, "other-client")], name="svc-b")
        assert first.name == "service-1" and second.name == "svc-b"
        assert first.child("service-client").ask("ping", timeout=1.0) == 1
        log.clear()
    assert log.events() == [
        ("stop", "other-client"),
        ("stop", "service-client"),
        ("stop", "grad_norm_tracker"),
        ("stop", "telemetry_reporter"),
        ("stop", "session_manager"),
        ("stop", "token_keepers"),  # last: heartbeats and telemetry still send its tokens while they stop
    ]
    assert rt.shutdown(1.0) is True  # idempotent
    with pytest.raises(RuntimeStoppedError):
        rt.start_service_supervisor([])


def test_service_supervisor_failure_leaves_the_root_alone(log: EventLog) -> None:
    with Runtime.scoped(slots=slot_factories(log)) as rt:
        service = rt.start_service_supervisor([worker_spec(log, "client")], max_restarts=0)
        service.child("client").resolve().tell("crash")
        assert service.wait(timeout=3.0) is not None
        rt.root.sync(timeout=2.0)
        assert rt.root.status is SupervisorStatus.RUNNING
        assert rt.root.directory.get("service-1") is None  # temporary: forgotten
        assert rt.session_manager.ask("still here", timeout=1.0) == ("session_manager", "still here")
        again = rt.start_service_supervisor([worker_spec(log, "client")])
        assert again.child("client").ask("ping", timeout=1.0) == 1


def test_stop_service_supervisor(log: EventLog) -> None:
    with Runtime.scoped(slots=PLACEHOLDERS) as rt:
        service = rt.start_service_supervisor(
            [worker_spec(log, "svc"), worker_spec(log, "training", Restart.TEMPORARY)], name="svc"
        )
        assert "svc [rest_for_one" in rt.tree()
        log.clear()
        rt.stop_service_supervisor("svc")
        assert log.events() == [("stop", "training"), ("stop", "svc")]
        assert service.status is SupervisorStatus.STOPPED


class Stubborn(SupervisedActor):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: Any) -> Any:
        self.release.wait(10.0)


def test_shutdown_is_bounded_by_its_deadline() -> None:
    release = threading.Event()
    slots = {"grad_norm_tracker": lambda rt: ChildSpec("grad_norm_tracker", partial(Stubborn.start, release),
                                                        shutdown=10.0)}
    rt = Runtime(slots={**PLACEHOLDERS, **slots}).start()
    rt.grad_norm_tracker.tell("block")
    began = time.monotonic()
    assert rt.shutdown(0.5) is False
    assert time.monotonic() - began < 1.0
    assert not rt.ioloop.running
    release.set()


def test_get_is_lazy_shared_and_thread_safe() -> None:
    Runtime._current = None
    results: list[Runtime] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait()
        results.append(Runtime.get())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(rt) for rt in results}) == 1
    rt = results[0]
    assert rt.shutdown(2.0)
    replacement = Runtime.get()  # a shut-down runtime is replaced on the next use
    assert replacement is not rt and not replacement.stopped


@pytest.mark.parametrize("crash", [False, True])
def test_a_program_never_hangs_on_exit(crash: bool) -> None:
    program = textwrap.dedent(f"""
        import sys
        from supervisors import ExitReason, SupervisedActor, ChildSpec
        from tinker_actors.runtime import Runtime

        class Noisy(SupervisedActor):
            def on_terminate(self, reason: ExitReason) -> None:
                print("stopped by", reason.kind.value, flush=True)

        rt = Runtime.get()
        rt.start_service_supervisor([ChildSpec("noisy", Noisy.start)])
        print("tree ok" if "noisy" in rt.tree() else "tree broken", flush=True)
        if {crash}:
            raise RuntimeError("the user's program crashed")
    """)
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert time.monotonic() - began < 15
    assert "tree ok" in result.stdout
    assert "stopped by normal" in result.stdout  # the atexit hook stopped the tree
    assert result.returncode == (1 if crash else 0), result.stderr
    if crash:
        assert "the user's program crashed" in result.stderr


def test_no_thread_is_left_after_shutdown() -> None:
    before = set(threading.enumerate())
    with Runtime.scoped(slots=PLACEHOLDERS) as rt:
        rt.start_service_supervisor([])
    assert wait_until(lambda: not (set(threading.enumerate()) - before), timeout=3.0), (
        set(threading.enumerate()) - before
    )


def test_get_refuses_to_start_a_new_tree_during_exit() -> None:
    Runtime._current = None
    rt = Runtime.get()
    Runtime._shutdown_at_exit()
    try:
        assert rt.stopped
        with pytest.raises(RuntimeStoppedError, match="exiting"):
            Runtime.get()
    finally:
        Runtime._exiting = False
