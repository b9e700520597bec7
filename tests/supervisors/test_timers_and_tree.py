"""Timers (send after a delay, repeat, cancel) and the printable tree."""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import pytest

from supervisors import ChildSpec, Strategy, SupervisedActor, Supervisor, TimerService
from tests.supervisors.actors import EventLog, wait_until, worker_spec


class Ticker(SupervisedActor):
    """Counts ticks from its own timers; the timers die with it."""

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self.stamps: list[float] = []

    def on_receive(self, message: Any) -> Any:
        if message == "tick":
            self.ticks += 1
            self.stamps.append(time.monotonic())
        elif isinstance(message, tuple) and message[0] == "every":
            return self.send_interval(message[1], "tick")
        elif isinstance(message, tuple) and message[0] == "after":
            return self.send_after(message[1], "tick")
        elif message == "ticks":
            return self.ticks
        elif message == "stamps":
            return list(self.stamps)
        return None


def test_send_after_delivers_once_after_the_delay() -> None:
    service = TimerService("test-timers")
    ref = Ticker.start()
    began = time.monotonic()
    timer = service.send_after(0.05, ref, "tick")
    assert wait_until(lambda: ref.ask("ticks", timeout=1.0) == 1)
    assert ref.ask("stamps", block=True, timeout=1.0)[0] - began >= 0.05
    assert timer.fired == 1 and not timer.active
    time.sleep(0.08)
    assert ref.ask("ticks", timeout=1.0) == 1
    ref.stop(timeout=1.0)
    service.close()


def test_cancel_prevents_delivery() -> None:
    service = TimerService("test-timers")
    ref = Ticker.start()
    timer = service.send_after(0.05, ref, "tick")
    assert timer.cancel() is True
    assert timer.cancel() is False
    time.sleep(0.1)
    assert ref.ask("ticks", timeout=1.0) == 0
    assert service.pending() == 0
    ref.stop(timeout=1.0)
    service.close()


def test_earlier_timer_scheduled_later_fires_first() -> None:
    service = TimerService("test-timers")
    ref = Ticker.start()
    late = service.send_after(1.0, ref, "tick")
    service.send_after(0.02, ref, "tick")
    assert wait_until(lambda: ref.ask("ticks", timeout=1.0) == 1, timeout=0.5)
    late.cancel()
    ref.stop(timeout=1.0)
    service.close()


def test_actor_timers_repeat_and_are_cancelled_when_it_exits() -> None:
    ref = Ticker.start()
    timer = ref.ask(("every", 0.02), block=True, timeout=1.0)
    assert wait_until(lambda: ref.ask("ticks", block=True, timeout=1.0) >= 3)
    ref.stop(timeout=1.0)
    assert not timer.active


def test_timer_to_a_dead_actor_cancels_itself() -> None:
    service = TimerService("test-timers")
    ref = Ticker.start()
    ref.stop(timeout=1.0)
    timer = service.send_interval(0.01, ref, "tick")
    assert wait_until(lambda: not timer.active)
    service.close()


def test_interval_must_be_positive() -> None:
    ref = Ticker.start()
    with pytest.raises(ValueError):
        TimerService("t").send_interval(0, ref, "tick")
    ref.stop(timeout=1.0)


def test_heartbeat_survives_a_restart_through_on_init() -> None:
    class Heart(Ticker):
        def on_init(self) -> None:
            self.send_interval(0.02, "tick")

    with Supervisor.start([ChildSpec("heart", Heart.start)]) as sup:
        heart = sup.child("heart")
        assert wait_until(lambda: heart.ask("ticks", timeout=1.0) >= 2)
        heart.resolve().stop(timeout=1.0)  # permanent: restarted, and its on_init re-arms the timer
        assert wait_until(lambda: heart.ask("ticks", timeout=2.0) >= 2)


def test_tree_shows_state_restarts_and_last_exit(log: EventLog) -> None:
    inner = Supervisor.child_spec("workers", [worker_spec(log, "w1"), worker_spec(log, "w2")],
                                  strategy=Strategy.ONE_FOR_ALL)
    with Supervisor.start([worker_spec(log, "session"), inner], name="root") as sup:
        workers = sup.supervisor("workers")
        workers.child("w2").resolve().tell("crash")
        assert wait_until(lambda: all(info.restarts == 1 for info in workers.which_children()))
        tree = sup.tree()
    lines = tree.splitlines()
    assert lines[0].startswith("root [one_for_one, max 3 restarts in 5 s] running")
    assert lines[1].startswith("├── session: Worker running permanent restarts=0")
    assert lines[2].startswith("└── workers [one_for_all")
    assert "w1: Worker running permanent restarts=1" in lines[3]
    assert "w2: Worker running permanent restarts=1 last_exit=crashed: ValueError: w2 crashed" in lines[4]
    assert lines[4].startswith("    └── ")
    assert "stopped" in sup.tree().splitlines()[0]


def test_timer_thread_is_a_daemon() -> None:
    service = TimerService("daemon-check")
    ref = Ticker.start()
    service.send_after(10.0, ref, "tick")
    threads = [t for t in threading.enumerate() if t.name == "daemon-check"]
    assert threads and all(t.daemon for t in threads)
    service.close()
    ref.stop(timeout=1.0)


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        ChildSpec("", partial(Ticker.start))
    with pytest.raises(ValueError):
        ChildSpec("x", partial(Ticker.start), shutdown=-1)
