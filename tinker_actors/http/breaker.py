"""Per-endpoint circuit breakers (FEATURES L2, optional: ``Config.circuit_breaker``).

After ``failure_threshold`` consecutive server-side failures of one endpoint (connection errors, timeouts,
5xx), the endpoint's circuit *opens*: calls fail at once with :class:`CircuitOpenError` instead of adding
load to a server that is down. After ``reset_timeout`` one call is let through (*half-open*); its success
closes the circuit, its failure opens it again. 4xx answers are the caller's problem, not the server's,
and do not count. Breakers live in the IoLoop thread only, so they need no lock.
"""

from __future__ import annotations

from tinker_actors.errors import APIConnectionError

__all__ = ["CircuitBreaker", "CircuitOpenError"]


class CircuitOpenError(APIConnectionError):
    """The endpoint failed too often in a row; calls fail fast until its reset timeout passes."""

    def __init__(self, endpoint: str, retry_in: float) -> None:
        super().__init__(f"circuit open for {endpoint}: it failed repeatedly; next try in {retry_in:.1f} s")
        self.endpoint = endpoint
        self.retry_in = retry_in


class CircuitBreaker:
    __slots__ = ("failures", "opened_at", "probing", "reset_timeout", "threshold")

    def __init__(self, threshold: int, reset_timeout: float) -> None:
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def check(self, endpoint: str, now: float) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go out now."""
        if self.opened_at is None:
            return
        waited = now - self.opened_at
        if waited >= self.reset_timeout and not self.probing:
            self.probing = True  # half-open: exactly one call finds out whether the server is back
            return
        raise CircuitOpenError(endpoint, max(0.0, self.reset_timeout - waited))

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures, self.opened_at, self.probing = 0, None, False
            return
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = now, False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.probing else "open"
