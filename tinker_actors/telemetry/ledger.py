"""Delivery accounting of one session's telemetry, shared by its reporter incarnations and its handle.

It lives outside the reporter actor on purpose: it must survive a reporter restart (so the figures
and the ``event_session_index`` keep counting) and be readable from the user's thread without
asking the actor. Every event ends in exactly one bucket, so at any time::

    emitted == acknowledged + dropped + failed + pending

``acknowledged`` only grows when the server answered ``{"status": "accepted"}`` for the batch that
held the event (tinkex counted hand-off to an upload task as "drained"; we do not).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

__all__ = ["DeliveryCounters", "DeliveryLedger"]


@dataclass(frozen=True, slots=True)
class DeliveryCounters:
    """A snapshot of one session's telemetry figures (events unless the name says batches)."""

    emitted: int = 0
    acknowledged: int = 0
    dropped: int = 0
    failed: int = 0
    upload_attempts: int = 0
    upload_failures: int = 0
    batches_acknowledged: int = 0

    @property
    def pending(self) -> int:
        """Queued, in flight, or still in the reporter's mailbox."""
        return self.emitted - self.acknowledged - self.dropped - self.failed


class DeliveryLedger:
    """Thread-safe counters plus the per-session event index and the start/end flags."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = DeliveryCounters()
        self._index = itertools.count()
        self.start_sent = False
        self.end_sent = False
        self._closed = False

    def next_index(self) -> int:
        """The next ``event_session_index`` (0, 1, 2, ... across reporter restarts)."""
        with self._lock:
            return next(self._index)

    @property
    def closed(self) -> bool:
        return self._closed

    def snapshot(self) -> DeliveryCounters:
        with self._lock:
            return self._counters

    def emitted(self, count: int = 1) -> None:
        with self._lock:
            c = self._counters
            # After close nothing will send it: it is failed at once, never left pending.
            self._counters = _replace(c, emitted=c.emitted + count,
                                      failed=c.failed + (count if self._closed else 0))

    def dropped(self, count: int = 1) -> None:
        with self._lock:
            self._counters = _replace(self._counters, dropped=self._counters.dropped + count)

    def failed(self, count: int) -> None:
        with self._lock:
            self._counters = _replace(self._counters, failed=self._counters.failed + count)

    def attempt(self, *, acknowledged_events: int | None) -> None:
        """One upload attempt ended: acknowledged (with its event count) or not (None)."""
        with self._lock:
            c = self._counters
            if acknowledged_events is None:
                self._counters = _replace(c, upload_attempts=c.upload_attempts + 1,
                                          upload_failures=c.upload_failures + 1)
            else:
                self._counters = _replace(c, upload_attempts=c.upload_attempts + 1,
                                          acknowledged=c.acknowledged + acknowledged_events,
                                          batches_acknowledged=c.batches_acknowledged + 1)

    def close(self) -> int:
        """No reporter will send anything more: whatever is pending is failed. Returns that count."""
        with self._lock:
            self._closed = True
            pending = self._counters.pending
            if pending > 0:
                self._counters = _replace(self._counters, failed=self._counters.failed + pending)
            return max(pending, 0)


def _replace(counters: DeliveryCounters, **changes: int) -> DeliveryCounters:
    values = {name: getattr(counters, name) for name in DeliveryCounters.__dataclass_fields__}
    values.update(changes)
    return DeliveryCounters(**values)
