"""What the service received and did: per-endpoint counts, per-(model, seq_id) counts, telemetry.

Served by the admin endpoints ``GET /local/v1/requests`` and ``GET /local/v1/telemetry`` so that a
test can check, for example, that an optim_step re-sent after a dropped answer was received twice
but executed once. Thread-safe: read from test threads while the service loop writes.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["RequestStats", "TelemetryLog"]

MAX_SEQUENCED = 50_000  # per-(id, seq_id) rows kept (the most recent), so memory stays flat


@dataclass
class _EndpointCounts:
    received: int = 0
    duplicates: int = 0
    executed: int = 0
    failed: int = 0
    faulted: int = 0


@dataclass
class _SeqCounts:
    endpoint: str
    received: int = 0
    executed: int = 0


class RequestStats:
    """Counters of requests per endpoint and of sequenced operations per (owner id, seq_id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, _EndpointCounts] = {}
        self._sequenced: dict[tuple[str, int], _SeqCounts] = {}

    def _counts(self, endpoint: str) -> _EndpointCounts:
        counts = self._endpoints.get(endpoint)
        if counts is None:
            counts = self._endpoints[endpoint] = _EndpointCounts()
        return counts

    def received(self, endpoint: str) -> None:
        with self._lock:
            self._counts(endpoint).received += 1

    def faulted(self, endpoint: str) -> None:
        with self._lock:
            self._counts(endpoint).faulted += 1

    def duplicate(self, endpoint: str) -> None:
        with self._lock:
            self._counts(endpoint).duplicates += 1

    def sequenced_received(self, owner_id: str, seq_id: int | None, endpoint: str) -> None:
        if seq_id is None:
            return
        with self._lock:
            key = (owner_id, seq_id)
            counts = self._sequenced.get(key)
            if counts is None:
                counts = self._sequenced[key] = _SeqCounts(endpoint)
                if len(self._sequenced) > MAX_SEQUENCED:
                    del self._sequenced[next(iter(self._sequenced))]
            counts.received += 1

    def executed(self, endpoint: str, owner_id: str | None = None, seq_id: int | None = None,
                 *, ok: bool = True) -> None:
        with self._lock:
            counts = self._counts(endpoint)
            counts.executed += 1
            if not ok:
                counts.failed += 1
            if owner_id is not None and seq_id is not None:
                seq = self._sequenced.get((owner_id, seq_id))
                if seq is not None:
                    seq.executed += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "endpoints": {name: vars(c).copy() for name, c in sorted(self._endpoints.items())},
                "sequenced": [
                    {"id": owner, "seq_id": seq, "endpoint": c.endpoint, "received": c.received,
                     "executed": c.executed}
                    for (owner, seq), c in sorted(self._sequenced.items())
                ],
            }


class TelemetryLog:
    """The telemetry events received: the newest ``max_events``, and at most ``max_bytes`` of them
    (measured as JSON), so a long-running service's memory stays flat."""

    def __init__(self, max_events: int = 10_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._lock = threading.Lock()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._events: deque[tuple[dict[str, Any], int]] = deque()  # (event, its size in bytes)
        self._bytes = 0
        self._batches = 0

    def add_batch(self, batch: dict[str, Any], sizes: list[int] | None = None) -> None:
        """Keep the batch's events (``sizes``: their JSON sizes, when the caller measured them)."""
        events = batch.get("events")
        context = {k: v for k, v in batch.items() if k != "events"}
        kept = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        if sizes is None or len(sizes) != len(kept):
            sizes = [len(json.dumps(event, default=str)) for event in kept]
        with self._lock:
            self._batches += 1
            for event, size in zip(kept, sizes, strict=True):
                self._events.append(({**event, "batch": context}, size))
                self._bytes += size
                while len(self._events) > self._max_events or self._bytes > self._max_bytes:
                    _, dropped = self._events.popleft()
                    self._bytes -= dropped

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"batches": self._batches, "events": [event for event, _ in self._events]}
