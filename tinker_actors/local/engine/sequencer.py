"""Per-model execution in ``seq_id`` order, with de-duplication of repeated submissions.

A training client numbers its operations 1, 2, 3, ... and the service must apply them in that order
even when they arrive out of order (several connections) or twice (a client retry after a dropped
answer). Each model has one :class:`ModelSequencer`: a task on the service loop that runs one
operation at a time. A gap in the numbering (a request that never arrived) is waited for at most
``gap_timeout_s``; then the sequencer moves on, so one lost request cannot stall a model forever.
A request that arrives after its turn was skipped is run when it arrives.

Only strict integers (not ``true``, not ``2.0``) from the first ``seq_id`` up to ``max_ahead`` beyond
the next one to run are accepted (:meth:`ModelSequencer.refusal`): one request numbered 10**30 would
otherwise become, once its gap timed out, the model's "next" number, and every later request would
count as late and run in arrival order, for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_AHEAD", "ModelSequencer", "Operation", "SeenRequest", "show_value"]

Operation = Callable[[], Awaitable[None]]

# Repeats come from client retries, seconds after the original; remembering the most recent ones
# is enough, and keeps a model's memory flat over a long run.
MAX_REMEMBERED = 10_000
DEFAULT_MAX_AHEAD = 4096


def show_value(value: object, limit: int = 40) -> str:
    """A short repr of a value from a request, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class SeenRequest:
    """A sequenced request already accepted: a repeat gets the same request id back."""

    endpoint: str
    request_id: str


@dataclass(frozen=True)
class _Queued:
    seq_id: int
    operation: Operation
    arrived: float


class ModelSequencer:
    """Runs one model's operations one at a time, in ``seq_id`` order."""

    def __init__(self, *, gap_timeout_s: float, first_seq_id: int = 1, max_ahead: int = DEFAULT_MAX_AHEAD) -> None:
        self._gap_timeout_s = gap_timeout_s
        self._first_seq_id = first_seq_id
        self._max_ahead = max_ahead
        self._next_seq_id = first_seq_id
        self._waiting: dict[int, _Queued] = {}
        self._ready: deque[Operation] = deque()
        self._consumed: set[int] = set()
        self._seen: dict[int, SeenRequest] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def seen(self, seq_id: int) -> SeenRequest | None:
        return self._seen.get(seq_id)

    def refusal(self, seq_id: object) -> str | None:
        """Why ``seq_id`` (as it came in the request's JSON) cannot be accepted; None if it can."""
        if isinstance(seq_id, bool) or not isinstance(seq_id, int):
            return f"seq_id must be an integer, got {show_value(seq_id)}"
        if seq_id < self._first_seq_id:
            return f"seq_id must be at least {self._first_seq_id}, got {seq_id}"
        if seq_id > self._next_seq_id + self._max_ahead:
            return (f"seq_id {show_value(seq_id)} is too far ahead: this model runs seq_id {self._next_seq_id} "
                    f"next and accepts at most {self._max_ahead} beyond it")
        return None

    def submit(self, seq_id: int | None, endpoint: str, request_id: str, operation: Operation) -> None:
        """Queue ``operation``; without a ``seq_id`` it runs in arrival order, unsequenced."""
        if seq_id is None:
            self._ready.append(operation)
        else:
            self._remember(seq_id, SeenRequest(endpoint, request_id))
            self._consumed.discard(seq_id)  # taken by a refused request earlier; now it has work
            if seq_id < self._next_seq_id:
                self._ready.append(operation)  # late: its turn was skipped, run it now
            else:
                self._waiting[seq_id] = _Queued(seq_id, operation, time.monotonic())
        self._wake()

    def consume(self, seq_id: int, endpoint: str, request_id: str) -> None:
        """Mark ``seq_id`` as taken without work (its future never completes, or it was refused)."""
        self._remember(seq_id, SeenRequest(endpoint, request_id))
        self._consumed.add(seq_id)
        self._wake()

    def _remember(self, seq_id: int, seen: SeenRequest) -> None:
        self._seen[seq_id] = seen
        if len(self._seen) > MAX_REMEMBERED:
            del self._seen[next(iter(self._seen))]

    def _wake(self) -> None:
        self._changed.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    @property
    def pending_count(self) -> int:
        return len(self._waiting) + len(self._ready)

    async def _run(self) -> None:
        while True:
            operation = self._next_ready()
            if operation is not None:
                try:
                    await operation()
                except asyncio.CancelledError:
                    raise
                except Exception:  # an operation reports its own errors; this is a last guard
                    _log.exception("local service: operation failed outside its future")
                continue
            self._changed.clear()
            timeout = self._time_until_gap_skip()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    def _next_ready(self) -> Operation | None:
        while self._next_seq_id in self._consumed:
            self._consumed.discard(self._next_seq_id)
            self._next_seq_id += 1
        queued = self._waiting.pop(self._next_seq_id, None)
        if queued is not None:
            self._next_seq_id += 1
            return queued.operation
        if self._ready:
            return self._ready.popleft()
        if self._waiting and self._time_until_gap_skip() == 0.0:
            self._next_seq_id = min(self._waiting)  # the missing ones are given up on
            return self._next_ready()
        return None

    def _time_until_gap_skip(self) -> float | None:
        if not self._waiting:
            return None
        oldest = min(q.arrived for q in self._waiting.values())
        return max(0.0, oldest + self._gap_timeout_s - time.monotonic())
