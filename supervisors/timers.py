"""Timers: send an actor a message after a delay, once or repeatedly, cancellably.

pykka has no ``send_after``. One daemon thread per :class:`TimerService` keeps a heap of deadlines
and ``tell``s when one is due; that is cheaper than a ``threading.Timer`` thread per heartbeat and
never blocks an actor. A timer whose target is dead cancels itself.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any

from pykka import ActorDeadError, ActorRef

__all__ = ["Timer", "TimerService", "default_timer_service", "send_after", "send_interval"]

logger = logging.getLogger(__name__)


class Timer:
    """A scheduled message. ``cancel()`` is idempotent and thread-safe."""

    __slots__ = ("_cancelled", "_fired", "interval", "message", "target")

    def __init__(self, target: ActorRef[Any], message: Any, interval: float | None) -> None:
        self.target = target
        self.message = message
        self.interval = interval
        self._cancelled = False
        self._fired = 0

    def cancel(self) -> bool:
        """Stop the timer; returns False if it was already cancelled or (one-shot) already fired."""
        was_pending = not self._cancelled and (self.interval is not None or self._fired == 0)
        self._cancelled = True
        return was_pending

    @property
    def active(self) -> bool:
        return not self._cancelled and (self.interval is not None or self._fired == 0)

    @property
    def fired(self) -> int:
        """How many times the message was delivered."""
        return self._fired

    def __repr__(self) -> str:
        kind = f"every {self.interval:g} s" if self.interval is not None else "once"
        return f"<Timer {kind} -> {self.target} active={self.active}>"


class TimerService:
    """A heap of deadlines served by one lazily started daemon thread."""

    def __init__(self, name: str = "supervisors-timers") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def send_after(self, delay: float, target: ActorRef[Any], message: Any) -> Timer:
        """``target.tell(message)`` once, ``delay`` seconds from now."""
        return self._schedule(Timer(target, message, None), max(0.0, delay))

    def send_interval(self, interval: float, target: ActorRef[Any], message: Any,
                      *, first_delay: float | None = None) -> Timer:
        """``target.tell(message)`` every ``interval`` seconds (first after ``first_delay``).

        Ticks that fall behind (a paused process) are skipped, not delivered in a burst.
        """
        if interval <= 0:
            raise ValueError("interval must be positive")
        delay = interval if first_delay is None else max(0.0, first_delay)
        return self._schedule(Timer(target, message, interval), delay)

    def pending(self) -> int:
        """Number of active timers (for tests and introspection)."""
        with self._cond:
            return sum(1 for _, _, timer in self._heap if timer.active)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread; scheduled timers are dropped."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _schedule(self, timer: Timer, delay: float) -> Timer:
        deadline = time.monotonic() + delay
        with self._cond:
            if self._closed:
                raise RuntimeError(f"timer service {self._name!r} is closed")
            heapq.heappush(self._heap, (deadline, next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()  # the new timer is now the earliest; wake the sleeper
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
                if due is None:
                    return
            self._fire(*due)

    def _next_due(self) -> tuple[float, Timer] | None:
        """Wait (lock held) until a timer is due; None once the service is closed."""
        while not self._closed:
            if not self._heap:
                self._cond.wait()
                continue
            deadline, _, timer = self._heap[0]
            if timer._cancelled:
                heapq.heappop(self._heap)
                continue
            now = time.monotonic()
            if deadline > now:
                self._cond.wait(deadline - now)
                continue
            heapq.heappop(self._heap)
            return deadline, timer
        return None

    def _fire(self, deadline: float, timer: Timer) -> None:
        try:
            timer.target.tell(timer.message)
        except ActorDeadError:
            timer._cancelled = True
            return
        except Exception:  # a timer thread must survive anything a target does
            logger.exception("timer delivery to %s failed", timer.target)
        timer._fired += 1
        if timer.interval is not None and not timer._cancelled:
            now = time.monotonic()
            next_deadline = deadline + timer.interval
            if next_deadline <= now:
                next_deadline = now + timer.interval
            with self._cond:
                if not self._closed:
                    heapq.heappush(self._heap, (next_deadline, next(self._seq), timer))


_default_lock = threading.Lock()
_default: TimerService | None = None


def default_timer_service() -> TimerService:
    """The process-wide service used by :func:`send_after` and ``SupervisedActor.send_after``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TimerService()
        return _default


def send_after(delay: float, target: ActorRef[Any], message: Any) -> Timer:
    return default_timer_service().send_after(delay, target, message)


def send_interval(interval: float, target: ActorRef[Any], message: Any,
                  *, first_delay: float | None = None) -> Timer:
    return default_timer_service().send_interval(interval, target, message, first_delay=first_delay)
