"""Retry decisions for one HTTP call: which failures to retry and how long to wait.

The backoff itself (exponential, capped, jittered) is :meth:`tinker_actors.config.RetryPolicy.backoff`;
this module reads what the server says: ``x-should-retry`` and ``Retry-After`` / ``retry-after-ms``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from tinker_actors.errors import is_retryable_status

__all__ = ["retry_after_seconds", "should_retry_status"]


def should_retry_status(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer with this status is worth another attempt.

    ``x-should-retry: true|false`` from the server wins; otherwise 408, 409, 429 and 5xx are retried.
    """
    verdict = headers.get("x-should-retry")
    if verdict == "true":
        return True
    if verdict == "false":
        return False
    return is_retryable_status(status_code)


def retry_after_seconds(headers: Mapping[str, str], limit: float, *, now: float | None = None) -> float | None:
    """The wait the server asked for, if it is in ``(0, limit]`` seconds; else ``None``.

    ``retry-after-ms`` (milliseconds) is preferred; ``Retry-After`` may be seconds or an HTTP date.
    Values outside the range are ignored (the caller falls back to its own backoff), so a server
    cannot park a client for an hour.
    """
    seconds: float | None = None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _to_float(raw_ms)
        seconds = seconds / 1000.0 if seconds is not None else None
    if seconds is None:
        raw = headers.get("retry-after")
        if raw is not None:
            seconds = _to_float(raw)
            if seconds is None:
                seconds = _seconds_until_http_date(raw, time.time() if now is None else now)
    if seconds is not None and 0 < seconds <= limit:
        return seconds
    return None


def _to_float(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value == value else None  # NaN is not a wait


def _seconds_until_http_date(raw: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now
