"""Batched sample polls (``retrieve_futures``) against per-future polls (``retrieve_future``), at C samples in flight.

One local service runs in its own process; between client runs the bench flips its ``sample_use_retrieve_futures``
flag (``PATCH /local/v1/protocol``), so both modes run against the same service, interleaved, ``--repeat`` times
(medians reported). Each client run is a fresh subprocess (its CPU time is the client's alone) that keeps
``--concurrency`` samples in flight for ``--seconds``. The service's request counts (``/local/v1/requests``) give
the polls each mode sent per sample and per second.

Two services (``--services``):

* ``instant`` -- zero-work (every sample is answered at once): polling costs what it costs when results are
  ready before the first poll; the batched mode adds one poll per wake-up and saves nothing here.
* ``busy``    -- the numpy model (tiny-byte, ``--tokens`` tokens per sample, two workers) with a short long poll
  (``--long-poll``): samples wait in the service's queue longer than a poll is held, as on a loaded real service
  (whose long poll is ~30 s, for samples that take seconds to minutes); per-future polls then repeat, the batched
  poll does not.

    .venv/bin/python bench/bench_batched_polls.py                 # ~1 minute
    .venv/bin/python bench/bench_batched_polls.py --sdk ours official38
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

OFFICIAL_038_PYTHON = Path(__file__).resolve().parents[1] / ".venv-tinker038" / "bin" / "python"
PROMPT = [72, 101, 108, 108, 111]
POLL_ENDPOINTS = ("retrieve_future", "retrieve_futures")


# ---- the service (child process) ---------------------------------------------------------------

def serve(kind: str, long_poll: float) -> None:
    from tinker_actors.local import LocalService

    with LocalService(zero_work=kind == "instant", long_poll_s=long_poll, session_timeout_s=3600.0,
                      workers=2) as service:
        print(json.dumps({"url": service.base_url, "api_key": service.api_key}), flush=True)
        sys.stdin.read()


class Server:
    def __init__(self, kind: str, long_poll: float) -> None:
        self._process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--long-poll", str(long_poll)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
        assert self._process.stdout is not None
        info = json.loads(self._process.stdout.readline())
        self.url: str = info["url"]
        self.api_key: str = info["api_key"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"X-API-Key": self.api_key, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def counts(self) -> dict[str, int]:
        endpoints = self.admin("GET", "/local/v1/requests")["endpoints"]
        return {name: endpoints.get(name, {}).get("received", 0) for name in ("asample", *POLL_ENDPOINTS)}

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["TINKER_TELEMETRY"] = "0"
    env.pop("TINKER_API_KEY", None)
    env.pop("TINKER_BASE_URL", None)
    return env


# ---- a client run (child process) --------------------------------------------------------------

async def _drive(sample: Any, concurrency: int, seconds: float) -> dict[str, float]:
    await asyncio.gather(*(sample() for _ in range(concurrency)))  # warm up
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await sample()
            count += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"samples": count, "wall": time.monotonic() - wall, "cpu": time.process_time() - cpu}


async def child(sdk: str, url: str, api_key: str, concurrency: int, seconds: float, tokens: int) -> None:
    if sdk == "ours":
        import tinker_actors as tinker

        service = tinker.ServiceClient(base_url=url, api_key=api_key, protocol="0.38")
        sampler = await service.create_sampling_client(base_model="tiny-byte")
    else:
        import tinker as tinker  # type: ignore[no-redef]  # the official SDK, in its own interpreter

        service = tinker.ServiceClient(base_url=url, api_key=api_key)
        sampler = await service.create_sampling_client(base_model="tiny-byte")
    prompt = tinker.ModelInput.from_ints(PROMPT)
    params = tinker.SamplingParams(max_tokens=tokens, stop=[])

    async def sample() -> object:
        return await sampler.sample(prompt, 1, params)

    try:
        print(json.dumps(await _drive(sample, concurrency, seconds)), flush=True)
    finally:
        service.close("success")  # 0.38's close takes the session's status; ours accepts it too


def one_run(server: Server, sdk: str, batched: bool, args: argparse.Namespace) -> dict[str, float]:
    server.admin("PATCH", "/local/v1/protocol", {"flags": {"sample_use_retrieve_futures": batched}})
    python = sys.executable if sdk == "ours" else str(OFFICIAL_038_PYTHON)
    before = server.counts()
    done = subprocess.run([python, __file__, "--child", sdk, "--url", server.url, "--api-key", server.api_key,
                           "--concurrency", str(args.concurrency), "--seconds", str(args.seconds),
                           "--tokens", str(args.tokens)], capture_output=True, text=True, env=_env(),
                          cwd=Path(__file__).resolve().parents[1], timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{sdk} client failed:\n{done.stderr[-3000:]}")
    after = server.counts()
    run: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    sent = {name: after[name] - before[name] for name in after}  # warm-up included: per sample below
    polls = sum(sent[name] for name in POLL_ENDPOINTS)
    run["polls_per_sample"] = polls / max(sent["asample"], 1)
    run["batched_polls_per_sample"] = sent["retrieve_futures"] / max(sent["asample"], 1)
    run["samples_per_s"] = run["samples"] / run["wall"]
    run["polls_per_s"] = run["polls_per_sample"] * run["samples_per_s"]
    run["cpu_ms_per_sample"] = 1000 * run["cpu"] / max(run["samples"], 1)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=4, help="tokens per sample (busy service)")
    parser.add_argument("--long-poll", type=float, default=0.25, help="the busy service's long poll (s)")
    parser.add_argument("--services", nargs="+", choices=("instant", "busy"), default=["instant", "busy"])
    parser.add_argument("--sdk", nargs="+", choices=("ours", "official38"), default=["ours"])
    parser.add_argument("--serve", choices=("instant", "busy"), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=("ours", "official38"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.long_poll)
        return
    if args.child:
        asyncio.run(child(args.child, args.url, args.api_key, args.concurrency, args.seconds, args.tokens))
        return
    print(f"C = {args.concurrency}, {args.seconds:g} s per run, medians of {args.repeat} interleaved runs")
    print(f"{'service':8} {'sdk':10} {'polls':10} {'samples/s':>9} {'polls/s':>8} {'polls/sample':>12} "
          f"{'client CPU ms/sample':>20}")
    for kind in args.services:
        server = Server(kind, args.long_poll if kind == "busy" else 5.0)
        try:
            runs: dict[tuple[str, bool], list[dict[str, float]]] = {}
            for _ in range(args.repeat):
                for sdk in args.sdk:
                    for batched in (False, True):
                        runs.setdefault((sdk, batched), []).append(one_run(server, sdk, batched, args))
            for (sdk, batched), results in runs.items():
                def median(key: str, results: list[dict[str, float]] = results) -> float:
                    return statistics.median(r[key] for r in results)
                print(f"{kind:8} {sdk:10} {'batched' if batched else 'per-future':10} {median('samples_per_s'):9.0f} "
                      f"{median('polls_per_s'):8.0f} {median('polls_per_sample'):12.2f} "
                      f"{median('cpu_ms_per_sample'):20.3f}")
        finally:
            server.close()


if __name__ == "__main__":
    main()
