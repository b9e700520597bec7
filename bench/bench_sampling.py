"""Sampling throughput and client CPU: tinker-actors beside the official SDK and bare httpx loops.

The local service runs in zero-work mode (``LocalService(zero_work=True)``: every sample is answered
at once with a canned result) in its own process. Every client run is a fresh subprocess, so its
process CPU time is the client's alone; the server's CPU is read from ``/proc`` and shown
separately. One sample = one ``asample`` + the ``retrieve_future`` poll(s) that fetch its result.

Clients (interleaved: one run of each, ``--repeat`` times; medians reported):

* ``ours``       -- ``tinker_actors.ServiceClient(...).create_sampling_client(...).sample_async``, speaking
  0.38 (the local service answers ``client/config``)
* ``ours-httpx`` -- ``ours`` on httpx's own transport (httpcore and h11 on the lean network backend), as
  before the lean transport: the A/B of ``tinker_actors/http/transport.py`` (not in the default set)
* ``ours063``    -- the same, pinned to protocol 0.6.3 (``protocol="0.6.3"``)
* ``official38`` -- the official tinker==0.38.0 SDK (``await sampler.sample(...)``, its default pyqwest
  transport), run by the interpreter of its own virtualenv (``.venv-tinker038``, made by ``make test``)
* ``official``   -- ``tinker.ServiceClient(...).create_sampling_client(...).sample_async`` (tinker 0.6.3,
  ``TINKER_TELEMETRY=0``)
* ``bare1``      -- a bare asyncio loop with one ``httpx.AsyncClient`` (asample, then poll)
* ``bareN``      -- the same loop over ``--bare-clients`` ``httpx.AsyncClient``s used round-robin

Each run keeps ``concurrency`` samples in flight for ``--seconds`` after a warm-up.

    .venv/bin/python bench/bench_sampling.py                       # ~2 minutes
    .venv/bin/python bench/bench_sampling.py --seconds 8 --repeat 5 # longer, steadier
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CLIENTS = ("ours", "ours-httpx", "ours063", "official38", "official", "bare1", "bareN")
OFFICIAL_038_PYTHON = Path(__file__).resolve().parents[1] / ".venv-tinker038" / "bin" / "python"
BASE_MODEL = "tiny-byte"
PROMPT = [72, 101, 108, 108, 111]
MAX_TOKENS = 4


# ---- server -------------------------------------------------------------------------------------

def serve(never_complete: bool) -> None:
    """Run the zero-work local service until stdin closes; print its base URL first."""
    from tinker_actors.local import FaultAction, FaultRule, LocalService

    with LocalService(zero_work=True, long_poll_s=5.0, session_timeout_s=3600.0) as service:
        if never_complete:
            service.faults.add(FaultRule(endpoint="asample", action=FaultAction.NEVER_COMPLETE))
        print(json.dumps({"url": service.base_url, "api_key": service.api_key}), flush=True)
        sys.stdin.read()  # the parent closes our stdin to stop us


class Server:
    """The zero-work service in a child process; reads that process's CPU time from /proc."""

    def __init__(self, *, never_complete: bool = False) -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        if never_complete:
            args.append("--never-complete")
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env=_child_env())
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the local service did not start")
        info = json.loads(line)
        self.url: str = info["url"]
        self.api_key: str = info["api_key"]

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TINKER_TELEMETRY"] = "0"
    env.pop("TINKER_API_KEY", None)  # the official SDK would prefer it over api_key=
    env.pop("TINKER_BASE_URL", None)
    return env


# ---- client runs (each in its own process) ------------------------------------------------------

def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVER_PID = 0  # set in each child: the server process whose CPU is read around the measured window


async def drive(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> dict[str, float]:
    """Keep ``concurrency`` calls in flight for ``seconds``; completed calls, wall, our CPU, the server's CPU."""
    await asyncio.gather(*(call() for _ in range(concurrency)))  # warm up: connections, caches
    await asyncio.gather(*(call() for _ in range(concurrency)))
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await call()
            count += 1

    server_cpu, cpu, wall = process_cpu_seconds(SERVER_PID), time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"samples": count, "wall": time.monotonic() - wall, "cpu": time.process_time() - cpu,
            "server_cpu": process_cpu_seconds(SERVER_PID) - server_cpu}


async def run_ours(url: str, api_key: str, concurrency: int, seconds: float, protocol: str = "auto"
                   ) -> dict[str, float]:
    import tinker_actors as tinker

    service = tinker.ServiceClient(base_url=url, api_key=api_key, protocol=protocol)
    try:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
        prompt = tinker.ModelInput.from_ints(PROMPT)
        params = tinker.SamplingParams(max_tokens=MAX_TOKENS)
        return await drive(lambda: sampler.sample_async(prompt, 1, params), concurrency, seconds)
    finally:
        service.close()


def use_httpx_transport() -> None:
    """Make this process's HTTP layers build plain httpx clients (httpx's transport on the lean network
    backend), as before the lean transport, for the A/B: the same settings as the pools' proxy case."""
    import httpx

    from tinker_actors.http import pools
    from tinker_actors.http.network import install

    def httpx_client(self: Any, limits: Any) -> httpx.AsyncClient:
        timeouts = self._config.timeouts
        client = httpx.AsyncClient(
            headers=self._headers, params=list(self._config.default_query),
            timeout=httpx.Timeout(timeouts.default, connect=timeouts.connect),
            limits=httpx.Limits(max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive),
            follow_redirects=False, verify=self._ssl_context(), trust_env=self._trust_env)
        install(client, self._backend)
        return client

    pools.ClientPools._new_client = httpx_client  # type: ignore[method-assign]


async def run_official(url: str, api_key: str, concurrency: int, seconds: float) -> dict[str, float]:
    import tinker

    service = tinker.ServiceClient(base_url=url, api_key=api_key)
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    prompt = tinker.types.ModelInput.from_ints(PROMPT)
    params = tinker.types.SamplingParams(max_tokens=MAX_TOKENS)
    return await drive(lambda: sampler.sample_async(prompt=prompt, num_samples=1, sampling_params=params),
                       concurrency, seconds)


async def run_official38(url: str, api_key: str, concurrency: int, seconds: float) -> dict[str, float]:
    """The official 0.38 SDK as its documentation shows it (``*_async`` is deprecated there: the
    ``sample`` future is awaited)."""
    import tinker

    service: Any = tinker.ServiceClient(base_url=url, api_key=api_key)  # 0.38's, not the 0.6.3 this venv types
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()  # 0.38: creation returns a future
    prompt = tinker.types.ModelInput.from_ints(PROMPT)
    params = tinker.types.SamplingParams(max_tokens=MAX_TOKENS)

    async def call() -> object:
        return await sampler.sample(prompt=prompt, num_samples=1, sampling_params=params)

    return await drive(call, concurrency, seconds)


async def run_bare(url: str, api_key: str, concurrency: int, seconds: float, clients: int) -> dict[str, float]:
    """What a hand-written client does: POST asample, then POST retrieve_future until the result is there."""
    import httpx

    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    headers = {"content-type": "application/json", "x-api-key": api_key}
    pool = [httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60.0) for _ in range(clients)]
    turn = itertools.cycle(pool)
    try:
        created = await pool[0].post("/api/v1/create_session", json={
            "tags": [], "user_metadata": None, "sdk_version": "bench", "type": "create_session"})
        session_id = created.raise_for_status().json()["session_id"]
        sampler = await pool[0].post("/api/v1/create_sampling_session", json={
            "session_id": session_id, "sampling_session_seq_id": 0, "base_model": BASE_MODEL,
            "type": "create_sampling_session"})
        sampling_session_id = json.dumps(sampler.raise_for_status().json()["sampling_session_id"])
        seq_ids = itertools.count()
        head = (b'{"num_samples":1,"prompt":{"chunks":[{"tokens":' + json.dumps(PROMPT).encode()
                + b'}]},"sampling_params":{"max_tokens":' + str(MAX_TOKENS).encode()
                + b'},"sampling_session_id":' + sampling_session_id.encode() + b',"seq_id":')

        async def call() -> object:
            submitted = await next(turn).post("/api/v1/asample", content=head + b"%d}" % next(seq_ids))
            poll = json.dumps({"request_id": submitted.raise_for_status().json()["request_id"]}).encode()
            while True:
                answer = await next(turn).post("/api/v1/retrieve_future", content=poll)
                if answer.status_code == 200:
                    payload = answer.json()
                    if payload.get("type") != "try_again":
                        return payload
                elif answer.status_code != 408:
                    answer.raise_for_status()

        return await drive(call, concurrency, seconds)
    finally:
        for client in pool:
            await client.aclose()


def run_child(args: argparse.Namespace) -> None:
    global SERVER_PID
    SERVER_PID = args.server_pid
    kind, url, key = args.child, args.url, args.api_key
    if kind in ("ours", "ours-httpx"):
        if kind == "ours-httpx":
            use_httpx_transport()
        result = asyncio.run(run_ours(url, key, args.concurrency[0], args.seconds))
    elif kind == "ours063":
        result = asyncio.run(run_ours(url, key, args.concurrency[0], args.seconds, protocol="0.6.3"))
    elif kind == "official38":
        result = asyncio.run(run_official38(url, key, args.concurrency[0], args.seconds))
    elif kind == "official":
        result = asyncio.run(run_official(url, key, args.concurrency[0], args.seconds))
    else:
        clients = 1 if kind == "bare1" else args.bare_clients
        result = asyncio.run(run_bare(url, key, args.concurrency[0], args.seconds, clients))
    print(json.dumps(result), flush=True)
    os._exit(0)  # the official SDK's background threads can delay a normal exit


# ---- the parent: interleave, take medians, print --------------------------------------------------

def one_run(server: Server, kind: str, concurrency: int, args: argparse.Namespace) -> dict[str, float]:
    python = str(OFFICIAL_038_PYTHON) if kind == "official38" else sys.executable
    command = [python, str(Path(__file__).resolve()), "--child", kind, "--url", server.url,
               "--api-key", server.api_key, "--concurrency", str(concurrency), "--seconds", str(args.seconds),
               "--bare-clients", str(args.bare_clients), "--server-pid", str(server.pid)]
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(), timeout=args.seconds * 10 + 60)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{kind} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def label(kind: str, bare_clients: int) -> str:
    return {"ours": "tinker-actors (0.38)", "ours-httpx": "tinker-actors, httpx transport",
            "ours063": "tinker-actors (0.6.3)",
            "official38": "official SDK 0.38", "official": "official SDK 0.6.3",
            "bare1": "bare httpx, 1 client", "bareN": f"bare httpx, {bare_clients} clients"}[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per client (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=[c for c in CLIENTS if c != "ours-httpx"],
                        help="official38 is left out when .venv-tinker038 does not exist")
    parser.add_argument("--bare-clients", type=int, default=16, help="httpx clients of the bareN loop")
    parser.add_argument("--json", type=Path, default=None, help="also write all runs to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--never-complete", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.never_complete)
        return
    if args.child:
        run_child(args)
        return

    if "official38" in args.clients and not OFFICIAL_038_PYTHON.exists():
        print(f"official 0.38 SDK not found at {OFFICIAL_038_PYTHON} (make test creates it): left out")
        args.clients.remove("official38")
    server = Server()
    all_runs: dict[str, Any] = {}
    try:
        print(f"zero-work local service at {server.url} (own process); {args.seconds:g} s per run, "
              f"medians of {args.repeat} interleaved runs; client CPU = the client process's CPU time")
        header = (f"{'client':<30} {'conc':>5} {'samples/s':>10} {'CPU ms/sample':>14} {'srv CPU %':>10} "
                  f"{'x off38':>8} {'CPU x off38':>12} {'x off063':>9} {'CPU x off063':>13} {'x bareN':>8}")
        for concurrency in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in args.clients}
            for _ in range(args.repeat):
                for kind in args.clients:
                    runs[kind].append(one_run(server, kind, concurrency, args))
            all_runs[str(concurrency)] = runs
            print()
            print(header)
            medians = {kind: (statistics.median(r["samples"] / r["wall"] for r in results),
                              statistics.median(1000 * r["cpu"] / max(r["samples"], 1) for r in results),
                              statistics.median(100 * r["server_cpu"] / r["wall"] for r in results))
                       for kind, results in runs.items()}
            for kind, (rate, cpu_ms, server_pct) in medians.items():
                cells = []
                for base in ("official38", "official"):
                    cells.append(f"{rate / medians[base][0]:.2f}" if base in medians else "-")
                    cells.append(f"{cpu_ms / medians[base][1]:.2f}" if base in medians else "-")
                bare = f"{rate / medians['bareN'][0]:.2f}" if "bareN" in medians else "-"
                print(f"{label(kind, args.bare_clients):<30} {concurrency:>5} {rate:>10.0f} {cpu_ms:>14.2f} "
                      f"{server_pct:>10.0f} {cells[0]:>8} {cells[1]:>12} {cells[2]:>9} {cells[3]:>13} {bare:>8}")
        print("\nx off38 / x off063 / x bareN: throughput ratio to the official SDK 0.38 / 0.6.3 / the bare loop; "
              "CPU x ...: client CPU per sample over theirs. srv CPU %: the server process's CPU over the "
              "measured window (100 = one core).")
        if args.json is not None:
            args.json.write_text(json.dumps(all_runs, indent=2))
    finally:
        server.close()


if __name__ == "__main__":
    main()
