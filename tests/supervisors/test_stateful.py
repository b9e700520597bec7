"""Property-based: random starts, terminations, crashes and stops against a model of OTP semantics.

After every step the supervisor must show exactly the children the model expects, in start order,
with the expected states and restart counts, and the actors must have started and stopped in the
order the strategy prescribes. Once the tree is stopped no actor thread may be left.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervisors import ChildState, Restart, Strategy, Supervisor, SupervisorStatus
from tests.supervisors.actors import EventLog, actor_threads, wait_until, worker_spec

NAMES = ["a", "b", "c", "d", "e"]


@dataclass
class ModelChild:
    name: str
    restart: Restart
    running: bool = True
    restarts: int = 0


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log = EventLog()
        self.model: list[ModelChild] = []
        self.sup: Supervisor | None = None
        self.expected_events: list[tuple[str, str]] = []
        self.threads_before = actor_threads()

    @initialize(strategy=st.sampled_from(list(Strategy)))
    def start_supervisor(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.sup = Supervisor.start([], strategy=strategy, max_restarts=10_000, max_seconds=1.0)

    # ---- helpers ---------------------------------------------------------------------------------

    def find(self, name: str) -> ModelChild | None:
        return next((child for child in self.model if child.name == name), None)

    def running_names(self) -> list[str]:
        return [child.name for child in self.model if child.running]

    def expect_exit(self, child: ModelChild, abnormal: bool) -> None:
        """What the supervisor does when ``child`` (already dead) ends, OTP-style."""
        if not child.restart.should_restart(abnormal):
            if child.restart is Restart.TEMPORARY:
                self.model.remove(child)
            else:
                child.running = False
            return
        index = self.model.index(child)
        if self.strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        elif self.strategy is Strategy.ONE_FOR_ALL:
            group = list(self.model)
        else:
            group = self.model[index:]
        for sibling in reversed(group):
            if sibling is not child and sibling.running:
                self.expected_events.append(("stop", sibling.name))
        for sibling in group:
            if sibling is not child and sibling.restart is Restart.TEMPORARY:
                self.model.remove(sibling)
        for sibling in group:
            if sibling in self.model:
                sibling.running = True
                sibling.restarts += 1
                self.expected_events.append(("start", sibling.name))

    # ---- rules -----------------------------------------------------------------------------------

    @precondition(lambda self: len(self.model) < len(NAMES))
    @rule(name=st.sampled_from(NAMES), restart=st.sampled_from(list(Restart)))
    def start_child(self, name: str, restart: Restart) -> None:
        assert self.sup is not None
        existing = self.find(name)
        if existing is not None and existing.running:
            return
        if existing is not None:
            self.model.remove(existing)  # a stopped transient child is replaced
        self.sup.start_child(worker_spec(self.log, name, restart))
        self.model.append(ModelChild(name, restart))
        self.expected_events.append(("start", name))

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        assert self.sup is not None
        child = data.draw(st.sampled_from(self.model))
        self.sup.terminate_child(child.name)
        if child.running:
            self.expected_events.append(("stop", child.name))
        self.model.remove(child)

    @precondition(lambda self: bool(self.running_names()))
    @rule(data=st.data(), how=st.sampled_from(["crash_ask", "crash_tell", "exit", "stop"]))
    def end_child(self, data: st.DataObject, how: str) -> None:
        assert self.sup is not None
        name = data.draw(st.sampled_from(self.running_names()))
        child = self.find(name)
        assert child is not None
        ref = self.sup.child(name).resolve()
        if how == "crash_ask":
            with pytest.raises(ValueError):
                ref.ask("crash", timeout=2.0)
        elif how == "exit":
            ref.tell("exit")  # SystemExit in a handler: must crash only this actor
        elif how == "crash_tell":
            ref.tell("crash")
        else:
            assert ref.stop(timeout=2.0) is True
        # The report is sent before the actor's thread lets go; wait for it, then for the supervisor.
        assert wait_until(lambda: not ref.is_alive())
        assert self.log.wait_for(lambda events: events.count(("stop", name)) >
                                 self.expected_events.count(("stop", name)))
        self.expected_events.append(("stop", name))
        self.expect_exit(child, abnormal=how != "stop")
        self.sup.sync(timeout=5.0)

    # ---- invariants ------------------------------------------------------------------------------

    @invariant()
    def tree_matches_model(self) -> None:
        if self.sup is None:
            return
        infos = self.sup.which_children()
        assert [info.child_id for info in infos] == [child.name for child in self.model]
        for info, child in zip(infos, self.model, strict=True):
            assert info.state is (ChildState.RUNNING if child.running else ChildState.STOPPED), info
            assert info.restarts == child.restarts, (info, child)
            assert info.restart is child.restart
            if child.running:
                assert info.ref is not None and info.ref.is_alive()
        assert self.sup.status is SupervisorStatus.RUNNING

    @invariant()
    def actors_started_and_stopped_in_order(self) -> None:
        assert self.log.events() == self.expected_events

    def teardown(self) -> None:
        if self.sup is None:
            return
        assert self.sup.stop(timeout=10.0) is True
        expected = [("stop", child.name) for child in reversed(self.model) if child.running]
        assert self.log.events()[len(self.expected_events):] == expected
        assert wait_until(lambda: not (actor_threads() - self.threads_before), timeout=5.0)


SupervisorMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervisorMachine = SupervisorMachine.TestCase
