"""Per-endpoint counters and latency samples of the HTTP layer.

Cheap to record (a few integer increments and one ``deque.append`` per call); percentiles are
computed only when :meth:`HttpStats.snapshot` is asked for. Latencies are kept in a bounded ring
per endpoint (the most recent :data:`SAMPLES_PER_ENDPOINT`), so memory stays flat however long the
process runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["SAMPLES_PER_ENDPOINT", "EndpointStats", "HttpStats"]

SAMPLES_PER_ENDPOINT = 4096


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """What happened on one endpoint (``"asample"``) since the HTTP layer started.

    ``count`` calls finished (succeeded or raised; cancelled ones are not counted), ``errors`` of
    them raised, ``retries`` extra attempts were made in total; ``attempts_by_outcome`` counts every
    attempt by status code or by ``"timeout"`` / ``"connection_error"``. Latencies are per call in
    seconds, retries and waits included, over the most recent samples.
    """

    endpoint: str
    count: int
    errors: int
    retries: int
    attempts_by_outcome: dict[str, int]
    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    samples: int


class _Counters:
    __slots__ = ("count", "errors", "latencies", "outcomes", "retries")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.retries = 0
        self.outcomes: dict[str, int] = {}
        self.latencies: deque[float] = deque(maxlen=SAMPLES_PER_ENDPOINT)


class HttpStats:
    """Counters per endpoint. Used from the IoLoop thread only; snapshots are plain copies."""

    def __init__(self) -> None:
        self._endpoints: dict[str, _Counters] = {}

    def counters(self, endpoint: str) -> _Counters:
        counters = self._endpoints.get(endpoint)
        if counters is None:
            counters = self._endpoints[endpoint] = _Counters()
        return counters

    @staticmethod
    def attempt(counters: _Counters, outcome: str) -> None:
        counters.outcomes[outcome] = counters.outcomes.get(outcome, 0) + 1

    @staticmethod
    def finished(counters: _Counters, latency: float, retries: int, *, error: bool) -> None:
        counters.count += 1
        counters.retries += retries
        if error:
            counters.errors += 1
        counters.latencies.append(latency)

    def snapshot(self) -> dict[str, EndpointStats]:
        """A consistent copy of every endpoint's figures, with latency percentiles."""
        return {name: _summarise(name, c) for name, c in list(self._endpoints.items())}


def _summarise(name: str, counters: _Counters) -> EndpointStats:
    ordered = sorted(counters.latencies)
    return EndpointStats(
        endpoint=name,
        count=counters.count,
        errors=counters.errors,
        retries=counters.retries,
        attempts_by_outcome=dict(counters.outcomes),
        mean=sum(ordered) / len(ordered) if ordered else 0.0,
        p50=_percentile(ordered, 0.50),
        p95=_percentile(ordered, 0.95),
        p99=_percentile(ordered, 0.99),
        max=ordered[-1] if ordered else 0.0,
        samples=len(ordered),
    )


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
