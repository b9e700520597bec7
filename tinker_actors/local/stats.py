"""What the service received and did: per-endpoint counts, per-(model, seq_id) counts, telemetry.

Served by the admin endpoints ``GET /local/v1/requests`` and ``GET /local/v1/telemetry`` so that a
test can check, for example, that an optim_step re-sent after a dropped answer was received twice
but executed once. Thread-safe: read from test threads while the service loop writes.
"""

from __future__ import annotations

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
    """The telemetry batches received (the newest ``max_events`` events are kept)."""

    def __init__(self, max_events: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._batches = 0

    def add_batch(self, batch: dict[str, Any]) -> None:
        events = batch.get("events")
        context = {k: v for k, v in batch.items() if k != "events"}
        with self._lock:
            self._batches += 1
            for event in events if isinstance(events, list) else []:
                if isinstance(event, dict):
                    self._events.append({**event, "batch": context})

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"batches": self._batches, "events": list(self._events)}
