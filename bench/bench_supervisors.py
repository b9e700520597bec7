"""Benchmark: restart latency and message throughput of supervised actors (a script, not a test).

    .venv/bin/python bench/bench_supervisors.py [--quick]

Prints restart latency (crash -> replacement serving requests, p50/p99), ask and tell throughput
through a supervised NamedRef versus a bare pykka actor in the same run (with the ratio), and the
IoLoop's submit_and_tell round-trip rate.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from supervisors import ChildSpec, SupervisedActor, Supervisor
from tinker_actors.runtime import IoLoop, Outcome


class BareCounter(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("crash")
        if isinstance(message, threading.Event):
            message.set()
            return None
        self.count += 1
        return self.count


class SupervisedCounter(SupervisedActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("crash")
        if isinstance(message, threading.Event):
            message.set()
            return None
        self.count += 1
        return self.count


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rate(operation: Callable[[], None], count: int) -> float:
    began = time.perf_counter()
    operation()
    return count / (time.perf_counter() - began)


def bench_restart_latency(rounds: int) -> list[float]:
    sup = Supervisor.start([ChildSpec("counter", SupervisedCounter.start)],
                           max_restarts=rounds + 1, max_seconds=3600)
    name = sup.child("counter", lookup_timeout=2.0)
    name.ask("ping", timeout=2.0)
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        name.resolve().tell("crash")
        assert name.ask("ping", timeout=2.0) == 1  # served by the fresh replacement
        samples.append(time.perf_counter() - began)
    sup.stop()
    return samples


def bench_throughput(count: int) -> list[tuple[str, float, float]]:
    bare = BareCounter.start()
    sup = Supervisor.start([ChildSpec("counter", SupervisedCounter.start)])
    named = sup.child("counter")

    def asks(send: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                send("ping", timeout=2.0)
        return run

    def tells(target: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                target.tell("ping")
            done = threading.Event()
            target.tell(done)
            done.wait(30)
        return run

    rows = []
    for label, bare_op, named_op in (
        ("ask round trips/s", asks(lambda m, timeout: bare.ask(m, timeout=timeout)), asks(named.ask)),
        ("tells/s", tells(bare), tells(named)),
    ):
        bare_op()  # warm up both before measuring
        named_op()
        # Interleave three runs of each and keep the medians: thread scheduling makes single runs noisy.
        bare_rates, named_rates = [], []
        for _ in range(3):
            bare_rates.append(rate(bare_op, count))
            named_rates.append(rate(named_op, count))
        rows.append((label, statistics.median(bare_rates), statistics.median(named_rates)))
    bare.stop()
    sup.stop()
    return rows


def bench_ioloop(count: int) -> float:
    loop = IoLoop("bench-ioloop")
    loop.start()
    done = threading.Event()
    remaining = [count]

    class Sink(pykka.ThreadingActor):
        use_daemon_thread = True

        def on_receive(self, message: Any) -> Any:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    sink = Sink.start()

    async def noop() -> int:
        return 1

    def keep(outcome: Outcome[int]) -> Outcome[int]:
        return outcome

    def run() -> None:
        for _ in range(count):
            loop.submit_and_tell(noop(), sink, keep)
        done.wait(60)

    result = rate(run, count)
    loop.stop(2.0)
    sink.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # crashes are the point here; keep tracebacks out
    rounds, count = (50, 2_000) if args.quick else (300, 20_000)

    samples = bench_restart_latency(rounds)
    print(f"restart latency (crash -> replacement serving), {rounds} restarts:")
    print(f"  p50 {percentile(samples, 0.50) * 1e3:7.3f} ms   p99 {percentile(samples, 0.99) * 1e3:7.3f} ms"
          f"   mean {statistics.fmean(samples) * 1e3:7.3f} ms")
    print()
    print(f"throughput, {count} messages, same run:")
    print(f"  {'':<20} {'bare pykka':>12} {'supervised':>12} {'ratio':>7}")
    for label, bare_rate, named_rate in bench_throughput(count):
        print(f"  {label:<20} {bare_rate:>12,.0f} {named_rate:>12,.0f} {named_rate / bare_rate:>7.2f}")
    print()
    print(f"IoLoop submit_and_tell round trips/s: {bench_ioloop(count):,.0f}")


if __name__ == "__main__":
    main()
