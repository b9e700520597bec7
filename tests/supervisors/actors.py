"""Test actors that record what happens to them in a shared, thread-safe event log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pykka

from supervisors import ChildExited, ChildSpec, ExitReason, Restart, SupervisedActor


class EventLog:
    """Thread-safe list of (event, child) tuples, with a bounded wait for a condition."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[tuple[str, str]] = []
        self.reasons: list[tuple[str, ExitReason]] = []

    def add(self, event: str, name: str, reason: ExitReason | None = None) -> None:
        with self._cond:
            self._events.append((event, name))
            if reason is not None:
                self.reasons.append((name, reason))
            self._cond.notify_all()

    def events(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self._events)

    def clear(self) -> None:
        with self._cond:
            self._events.clear()
            self.reasons.clear()

    def wait_for(self, predicate: Callable[[list[tuple[str, str]]], bool], timeout: float = 3.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._events), timeout)


class Worker(SupervisedActor):
    """Counts pings; crashes, exits or blocks on command. Logs start and stop."""

    def __init__(self, log: EventLog, name: str, *, fail_start: threading.Event | None = None,
                 start_delay: float = 0.0) -> None:
        super().__init__()
        self.log = log
        self.name = name
        self.fail_start = fail_start
        self.start_delay = start_delay
        self.count = 0

    def on_init(self) -> None:
        if self.start_delay:
            time.sleep(self.start_delay)
        if self.fail_start is not None and self.fail_start.is_set():
            raise RuntimeError(f"{self.name} cannot start")
        self.log.add("start", self.name)

    def on_terminate(self, reason: ExitReason) -> None:
        self.log.add("stop", self.name, reason)

    def on_receive(self, message: Any) -> Any:
        if message == "ping":
            self.count += 1
            return self.count
        if message == "crash":
            raise ValueError(f"{self.name} crashed")
        if message == "exit":
            raise SystemExit(7)
        if message == "stop_self":
            self.stop()
            return None
        if isinstance(message, tuple) and message[0] == "block":
            release: threading.Event = message[1]
            release.wait(5.0)
            return "unblocked"
        return super().on_receive(message)


def worker_spec(log: EventLog, name: str, restart: Restart = Restart.PERMANENT, **kwargs: Any) -> ChildSpec:
    shutdown = kwargs.pop("shutdown", 2.0)
    return ChildSpec(name, partial(Worker.start, log, name, **kwargs), restart=restart, shutdown=shutdown)


class ReportCollector(pykka.ThreadingActor):
    """A stand-in parent that keeps every ChildExited it is told."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[ChildExited] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self.reports.append(message)
            return None
        if message == "reports":
            return list(self.reports)
        return None


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def actor_threads() -> set[threading.Thread]:
    """Live threads that belong to actors of these tests (pykka names them ClassName-N)."""
    prefixes = ("Worker-", "SupervisorActor-", "Stubborn-", "Probe-", "Careful-", "Ticker-", "Heart-",
                "Spawner-", "ReportCollector-")
    return {t for t in threading.enumerate() if t.name.startswith(prefixes)}
