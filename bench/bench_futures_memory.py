"""Client memory and threads with 10,000 sample futures in flight that never complete.

The zero-work local service runs in its own process with a ``NEVER_COMPLETE`` fault on ``asample``:
every submission is accepted and its future stays pending forever (polls are long-polled, then
answered "try again"). Each client runs in a fresh subprocess that

1. creates a service client and a sampling client (baseline RSS and thread count taken here),
2. calls ``sample()`` ``--futures`` times without waiting (ours: ``SamplingClient.sample``; the
   official SDK: its ``SamplingClient.sample``),
3. waits ``--settle`` seconds while they are pending, then reads RSS (``VmRSS``) and ``Threads`` from
   ``/proc/self/status``, and counts the futures that are still pending.

Reported: RSS growth (MB) and per-future cost (KB), thread growth, and how many ``asample`` calls
reached the server (ours keeps at most ``RetryConfig.max_connections`` samples on the wire; the rest
wait in the client without a thread or a connection each). Target: <= 50 MB, no thread per request.

    .venv/bin/python bench/bench_futures_memory.py                 # ~30 s
    .venv/bin/python bench/bench_futures_memory.py --futures 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: the sibling script is imported from this directory.
from bench_sampling import BASE_MODEL, PROMPT, Server

CLIENTS = ("ours", "official")


def proc_status() -> tuple[float, int]:
    """(RSS in MB, thread count) of this process."""
    rss_kb, threads = 0, 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss_kb / 1024, threads


def measure(submit: Any, count: int, settle: float) -> dict[str, float]:
    """Baseline, ``count`` calls of ``submit()``, settle, measure; returns the figures and the futures."""
    rss_before, threads_before = proc_status()
    started = time.monotonic()
    futures = [submit() for _ in range(count)]
    submitted_in = time.monotonic() - started
    time.sleep(settle)
    rss_after, threads_after = proc_status()
    pending = sum(1 for future in futures if not future.done())
    return {"rss_before": rss_before, "rss_after": rss_after, "threads_before": threads_before,
            "threads_after": threads_after, "pending": pending, "submit_seconds": submitted_in}


def run_ours(url: str, api_key: str, count: int, settle: float) -> dict[str, float]:
    import tinker_actors as tinker

    service = tinker.ServiceClient(base_url=url, api_key=api_key)
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    prompt = tinker.ModelInput.from_ints(PROMPT)
    params = tinker.SamplingParams(max_tokens=4)
    return measure(lambda: sampler.sample(prompt, 1, params), count, settle)


def run_official(url: str, api_key: str, count: int, settle: float) -> dict[str, float]:
    import tinker

    service = tinker.ServiceClient(base_url=url, api_key=api_key)
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    prompt = tinker.types.ModelInput.from_ints(PROMPT)
    params = tinker.types.SamplingParams(max_tokens=4)
    return measure(lambda: sampler.sample(prompt=prompt, num_samples=1, sampling_params=params), count, settle)


def asample_calls(server: Server) -> int:
    """How many asample submissions the service has received so far."""
    answer = httpx.get(server.url + "/local/v1/requests", headers={"x-api-key": server.api_key}, timeout=30)
    endpoints = answer.raise_for_status().json().get("endpoints", {})
    return int(endpoints.get("asample", {}).get("received", 0))


def one_run(server: Server, kind: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, TINKER_TELEMETRY="0")
    env.pop("TINKER_API_KEY", None)
    before = asample_calls(server)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--url", server.url,
                           "--api-key", server.api_key, "--futures", str(args.futures), "--settle", str(args.settle)],
                          capture_output=True, text=True, env=env, timeout=args.settle * 4 + 120)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["asample_calls"] = asample_calls(server) - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--futures", type=int, default=10_000, help="futures left pending (default 10000)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before measuring (default 5)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per client (default 1)")
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_ours if args.child == "ours" else run_official
        print(json.dumps(run(args.url, args.api_key, args.futures, args.settle)), flush=True)
        os._exit(0)  # do not wait for 10,000 pending futures to be torn down

    server = Server(never_complete=True)
    try:
        print(f"{args.futures} sample() futures that never complete; measured after {args.settle:g} s; "
              f"client in its own process, server (zero-work, NEVER_COMPLETE on asample) in another")
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in args.clients}
        for _ in range(args.repeat):
            for kind in args.clients:
                runs[kind].append(one_run(server, kind, args))
        print(f"{'client':<16} {'RSS base MB':>11} {'RSS +MB':>8} {'KB/future':>10} {'threads':>8} "
              f"{'+threads':>9} {'pending':>8} {'asample sent':>13} {'submit s':>9}")
        for kind, results in runs.items():
            def med(key: str, results: list[dict[str, float]] = results) -> float:
                return statistics.median(r[key] for r in results)
            growth = statistics.median(r["rss_after"] - r["rss_before"] for r in results)
            threads_added = statistics.median(r["threads_after"] - r["threads_before"] for r in results)
            print(f"{kind:<16} {med('rss_before'):>11.1f} {growth:>8.1f} {1024 * growth / args.futures:>10.2f} "
                  f"{med('threads_after'):>8.0f} {threads_added:>9.0f} {med('pending'):>8.0f} "
                  f"{med('asample_calls'):>13.0f} {med('submit_seconds'):>9.2f}")
        ours = runs.get("ours")
        if ours:
            growth = statistics.median(r["rss_after"] - r["rss_before"] for r in ours)
            threads_added = statistics.median(r["threads_after"] - r["threads_before"] for r in ours)
            verdict = "met" if growth <= 50 and threads_added < 10 else "MISSED"
            print(f"\ntarget (<= 50 MB, no thread per request): {verdict} ({growth:.1f} MB, "
                  f"{threads_added:+.0f} threads)")
    finally:
        server.close()


if __name__ == "__main__":
    main()
