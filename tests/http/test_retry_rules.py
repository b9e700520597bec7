"""The pure retry rules: backoff ranges, Retry-After parsing, x-should-retry, redaction helpers."""

from __future__ import annotations

import email.utils
import random

from hypothesis import given
from hypothesis import strategies as st

from tinker_actors.config import PollBackoff, RetryPolicy
from tinker_actors.http.headers import call_headers
from tinker_actors.http.retry import retry_after_seconds, should_retry_status
from tinker_actors.http.stats import HttpStats
from tinker_actors.logs import REDACTED, redact_event, redact_headers, redact_text


@given(retry=st.integers(min_value=0, max_value=100), seed=st.integers())
def test_backoff_is_capped_exponential_with_multiplicative_jitter(retry: int, seed: int) -> None:
    policy = RetryPolicy()
    nominal = min(0.5 * 2.0**retry, 10.0)
    delay = policy.backoff(retry, random.Random(seed))
    assert 0.75 * nominal <= delay <= nominal


def test_backoff_grows_then_caps() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert [policy.backoff(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_poll_backoff_doubles_to_its_cap() -> None:
    backoff = PollBackoff(jitter=0.0)
    assert [backoff.delay(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    in_ten = email.utils.formatdate(now + 10, usegmt=True)
    assert retry_after_seconds({"retry-after-ms": "1500"}, 60) == 1.5
    assert retry_after_seconds({"retry-after": "2"}, 60) == 2.0
    assert retry_after_seconds({"retry-after": "0.25"}, 60) == 0.25
    date_wait = retry_after_seconds({"retry-after": in_ten}, 60, now=now)
    assert date_wait is not None and abs(date_wait - 10.0) < 1.0
    # ms wins over seconds
    assert retry_after_seconds({"retry-after-ms": "100", "retry-after": "5"}, 60) == 0.1


def test_retry_after_out_of_range_or_garbage_is_ignored() -> None:
    now = 1_700_000_000.0
    past = email.utils.formatdate(now - 10, usegmt=True)
    for headers in ({}, {"retry-after": "0"}, {"retry-after": "-3"}, {"retry-after": "61"},
                    {"retry-after": "soon"}, {"retry-after-ms": "nan"}, {"retry-after": past}):
        assert retry_after_seconds(headers, 60, now=now) is None, headers


def test_should_retry_status() -> None:
    assert [s for s in (400, 401, 404, 408, 409, 410, 422, 429, 500, 502, 503) if should_retry_status(s, {})] \
        == [408, 409, 429, 500, 502, 503]
    assert should_retry_status(500, {"x-should-retry": "false"}) is False
    assert should_retry_status(400, {"x-should-retry": "true"}) is True


def test_call_headers_per_method() -> None:
    post = call_headers("POST", {"X-Tinker-Request-Type": "Sample"})
    assert post["content-type"] == "application/json"
    assert post["x-idempotency-key"].startswith("tinker-actors-retry-")
    assert post["x-stainless-retry-count"] == "0"
    assert post["x-tinker-request-type"] == "Sample"
    get = call_headers("GET", None)
    assert "content-type" not in get and "x-idempotency-key" not in get


def test_redaction_helpers() -> None:
    headers = {"X-API-Key": "k1", "Authorization": "Bearer t", "CF-Access-Client-Secret": "s", "Accept": "a"}
    assert redact_headers(headers) == {"X-API-Key": REDACTED, "Authorization": REDACTED,
                                       "CF-Access-Client-Secret": REDACTED, "Accept": "a"}
    assert redact_headers([("x-api-key", "k1")]) == {"x-api-key": REDACTED}
    assert redact_text("key=k1k1 and k1k1", ["k1k1", ""]) == f"key={REDACTED} and {REDACTED}"
    event = redact_event(None, "info", {"event": "x", "api_key": "k", "request_headers": {"x-api-key": "k"}})
    assert event == {"event": "x", "api_key": REDACTED, "request_headers": {"x-api-key": REDACTED}}


def test_percentiles_use_nearest_rank() -> None:
    stats = HttpStats()
    counters = stats.counters("GET x")
    for latency in range(1, 101):
        HttpStats.finished(counters, float(latency), 0, error=latency > 98)
    snapshot = stats.snapshot()["GET x"]
    assert (snapshot.p50, snapshot.p95, snapshot.p99, snapshot.max) == (50.0, 95.0, 99.0, 100.0)
    assert (snapshot.count, snapshot.errors, snapshot.samples) == (100, 2, 100)
