"""The samples a service is working on: cancelling them, and the completion queues of ``retrieve_futures``.

``cancel_future`` (0.38, behind ``sample_cancel_enabled``) names a sample nobody waits for anymore: a sample
still queued never starts, a running one stops at its next token (:mod:`tinker_actors.local.model.generation_stop`),
and its future is answered at once as cancelled. :class:`SampleCounters` count every token the
service generated, so a test sees the work a cancel saved.

``retrieve_futures`` (0.38, behind ``sample_use_retrieve_futures``) lets a client learn which of a sampling
session's samples finished with one long poll instead of one poll per sample: every finished sample is an event
with a cursor in its session's queue (one queue per ``(sampling session, clone)``; a clone is
``seq_id // 1_000_000_000``); a poll returns the events after ``prev_cursor`` and drops those before it.
Lives on the service loop, except the token count, which worker threads add to.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tinker_actors.local.model.generation_stop import GenerationControl

if TYPE_CHECKING:
    from tinker_actors.local.engine.state import EndedSession, ServiceState
    from tinker_actors.local.engine.stats import RequestStats

__all__ = ["CANCELLED_MESSAGE", "CLONE_SEQ_IDS", "Completion", "SampleCounters", "SampleWork", "sample_counters_of",
           "sample_work_of"]

# 0.38 numbers a clone's seq ids from clone * 1e9 (join_sampling_session); its completions are its own.
CLONE_SEQ_IDS = 1_000_000_000
CANCELLED_MESSAGE = "the sample was cancelled (cancel_future): nobody waits for it anymore"
# Events a queue keeps at most when nobody polls it (clients that never use retrieve_futures).
_MAX_EVENTS = 100_000


@dataclass(frozen=True)
class Completion:
    """A finished sample as ``retrieve_futures`` reports it."""

    cursor: int
    request_id: str
    state: Literal["finished", "failed"]
    payload_size: int | None

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"state": self.state, "request_id": self.request_id}
        if self.state == "finished" and self.payload_size:
            answer["response_payload_uncompressed_size"] = self.payload_size
        return answer


@dataclass
class _Queue:
    events: list[Completion] = field(default_factory=list)
    next_cursor: int = 1
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Sample:
    queue_key: tuple[str, int]
    owner: str
    control: GenerationControl


class SampleCounters:
    """What the service's samplers did, for tests and benchmarks: tokens generated, samples cancelled.
    One per service (kept beside its request counts, so restarts add up); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = 0
        self._cancelled = 0

    def add_tokens(self, tokens: int) -> None:
        with self._lock:
            self._tokens += tokens

    def add_cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"tokens_generated": self._tokens, "cancelled": self._cancelled}


class SampleWork:
    def __init__(self, counters: SampleCounters | None = None,
                 seconds_per_token: Callable[[], float] = lambda: 0.0) -> None:
        self._samples: dict[str, _Sample] = {}
        self._queues: dict[tuple[str, int], _Queue] = {}
        self.counters = counters if counters is not None else SampleCounters()
        self._seconds_per_token = seconds_per_token  # the slow-sampling fault (FaultRegistry.slow_sampling)

    # ---- samples -------------------------------------------------------------------------------
    def begin(self, request_id: str, sampler_id: str, seq_id: int | None, owner: str) -> GenerationControl:
        """A new sample's control (its stop switch): queued until its worker starts it."""
        control = GenerationControl(self._count_tokens)
        clone = (seq_id or 0) // CLONE_SEQ_IDS
        self._samples[request_id] = _Sample((sampler_id, clone), owner, control)
        return control

    def _count_tokens(self, tokens: int) -> None:
        # on the sample's worker thread: sleeping here slows that sample only
        self.counters.add_tokens(tokens)
        pause = self._seconds_per_token()
        if pause > 0:
            time.sleep(pause)

    def cancel(self, request_id: str, owner: str) -> bool:
        """Stop ``owner``'s sample; False if it is unknown to ``owner`` or already finished."""
        sample = self._samples.get(request_id)
        if sample is None or sample.owner != owner:
            return False
        sample.control.stop()
        self.counters.add_cancelled()
        return True

    def finish(self, request_id: str, *, failed: bool, payload_size: int | None) -> None:
        """The sample ended (its future is answered): an event in its session's queue."""
        sample = self._samples.pop(request_id, None)
        if sample is None:
            return
        queue = self._queues.setdefault(sample.queue_key, _Queue())
        queue.events.append(Completion(queue.next_cursor, request_id, "failed" if failed else "finished",
                                       payload_size))
        queue.next_cursor += 1
        if len(queue.events) > _MAX_EVENTS:
            del queue.events[: len(queue.events) - _MAX_EVENTS]
        queue.changed.set()

    # ---- retrieve_futures ----------------------------------------------------------------------
    async def completions(self, sampler_id: str, clone: int, prev_cursor: int,
                          timeout_s: float) -> tuple[list[Completion], int]:
        """The events after ``prev_cursor`` (those up to it are dropped: seen), waiting up to ``timeout_s``
        for one; and the cursor to pass next."""
        queue = self._queues.setdefault((sampler_id, clone), _Queue())
        if queue.events and queue.events[0].cursor <= prev_cursor:
            queue.events = [event for event in queue.events if event.cursor > prev_cursor]
        if not queue.events and timeout_s > 0:
            queue.changed.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await queue.changed.wait()
            except TimeoutError:
                pass
        events = [event for event in queue.events if event.cursor > prev_cursor]
        return events, (events[-1].cursor if events else prev_cursor)

    def session_ended(self, ended: EndedSession) -> None:
        """Drop the completion queues of an ended session's sampling sessions (and their clones)."""
        gone = set(ended.sampler_ids)
        for key in [key for key in self._queues if key[0] in gone]:
            del self._queues[key]

    @property
    def queue_count(self) -> int:
        return len(self._queues)


_BY_STATE: weakref.WeakKeyDictionary[ServiceState, SampleWork] = weakref.WeakKeyDictionary()
_BY_STATS: weakref.WeakKeyDictionary[RequestStats, SampleCounters] = weakref.WeakKeyDictionary()


def sample_counters_of(stats: RequestStats) -> SampleCounters:
    """The sample counters kept beside a service's request counts (``LocalService.stats``)."""
    counters = _BY_STATS.get(stats)
    if counters is None:
        counters = _BY_STATS[stats] = SampleCounters()
    return counters


def sample_work_of(state: ServiceState) -> SampleWork:
    """The one :class:`SampleWork` of a running service (its ``ServiceState``; a restart starts a new one)."""
    work = _BY_STATE.get(state)
    if work is None:
        faults = state.faults
        work = _BY_STATE[state] = SampleWork(sample_counters_of(state.stats), lambda: faults.seconds_per_token)
        state.session_end_listeners.append(work.session_ended)
    return work
