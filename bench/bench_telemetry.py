"""Telemetry delivery figures against the embedded service with a faulty telemetry endpoint.

For each failure rate, one session logs N events; we then close it and compare what the client
counted (emitted / acknowledged / dropped / failed) with what the service actually received, and
time ``close()`` and a failing user call. Run: ``.venv/bin/python bench/bench_telemetry.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import tinker_actors as tinker
from tinker_actors.config import Config, RetryPolicy, TelemetrySettings
from tinker_actors.local import FaultRule, LocalService


def run(service: LocalService, failure_rate: float, events: int, settings: TelemetrySettings) -> str:
    service.faults.clear()
    if failure_rate > 0:
        service.faults.add(FaultRule(endpoint="telemetry", status=503, probability=failure_rate, seed=1))
    config = Config(api_key=service.api_key, base_url=service.base_url, telemetry=settings,
                    retry=RetryPolicy(max_retries=0))
    client = tinker.ServiceClient(config=config)
    service.faults.add(FaultRule(endpoint="create_sampling_session", status=400, times=1))
    started = time.monotonic()
    with contextlib.suppress(tinker.BadRequestError):  # the point: how fast it is raised
        client.create_sampling_client(base_model="tiny-byte").result()
    error_latency = time.monotonic() - started
    for n in range(events):
        client.telemetry.log("bench", {"n": n})
    client.telemetry.wait_until_settled(settings.drain_timeout + 30)
    started = time.monotonic()
    client.close()
    close_time = time.monotonic() - started
    c = client.telemetry.counters()
    received = [e for e in service.telemetry_events() if e["batch"].get("session_id") == client.session_id]
    unique = len({e["event_id"] for e in received})
    return (f"| {failure_rate:>4.0%} | {c.emitted:>7} | {c.acknowledged:>12} | {unique:>8} | {c.dropped:>7} | "
            f"{c.failed:>6} | {c.upload_attempts:>5} ({c.upload_failures}) | {error_latency * 1000:>8.1f} ms | "
            f"{close_time * 1000:>7.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    settings = TelemetrySettings(batch_size=100, flush_threshold=100, upload_attempts=4, retry_base_delay=0.05,
                                 retry_max_delay=0.4, drain_timeout=2.0, stats_interval=None)
    print("| fail | emitted | acknowledged | received | dropped | failed | POSTs (failed) | user error | close() |")
    print("|---|---|---|---|---|---|---|---|---|")
    with LocalService(zero_work=True) as service:
        for rate in (0.0, 0.3, 0.6, 1.0):
            print(run(service, rate, args.events, settings), flush=True)


if __name__ == "__main__":
    main()
