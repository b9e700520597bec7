"""Client cost of the HTTP layer against a zero-work server on 127.0.0.1, beside bare httpx.

The server runs in a child process and answers every request at once with a pre-encoded ``{}``, so
the client's CPU dominates. For each concurrency we run, for ``--seconds`` each:

* bare httpx, one ``AsyncClient`` (what a naive client does);
* bare httpx, ``--clients`` ``AsyncClient``s used round-robin (the lower bound for our design);
* ``HttpLayer.request(Purpose.SAMPLING, "POST", "/api/v1/asample", ...)`` with the default pools
  (retries, headers, idempotency key, JSON decode, statistics included).

Prints requests per second and client CPU per request (process time / requests).

    .venv/bin/python bench/bench_http.py [--seconds 1.5] [--repeat 3] [--concurrency 64 256] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import httpx

from tinker_actors.config import Config
from tinker_actors.http import HttpLayer, Purpose

_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
             b"connection: keep-alive\r\n\r\n{}")
BODY = b'{"num_samples":1,"prompt":{"chunks":[{"tokens":[1,2,3]}]},"sampling_params":{"max_tokens":3}}'


class _ZeroWork(asyncio.Protocol):
    """Answers each complete HTTP/1.1 request with the canned response; parses only what it must."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15:].split(b"\r\n", 1)[0])
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            self._buffer = self._buffer[total:]
            assert self._transport is not None
            self._transport.write(_RESPONSE)


def serve() -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_ZeroWork, "127.0.0.1", 0, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()
    asyncio.run(main())


async def drive(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> tuple[float, float]:
    """Run ``concurrency`` workers calling ``call`` for ``seconds``; (requests/s, CPU ms per request)."""
    for _ in range(concurrency):  # warm up connections
        await call()
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await call()
            count += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return count / wall, 1000 * cpu / max(count, 1)


async def bare_httpx(url: str, clients: int, concurrency: int, seconds: float) -> tuple[float, float]:
    pool = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000))
            for _ in range(clients)]
    turn = itertools.cycle(pool)
    headers = {"content-type": "application/json", "x-api-key": "bench"}

    async def call() -> object:
        response = await next(turn).post(url + "/api/v1/asample", content=BODY, headers=headers)
        return response.json()

    try:
        return await drive(call, concurrency, seconds)
    finally:
        for client in pool:
            await client.aclose()


async def http_layer(url: str, concurrency: int, seconds: float, clients: int | None = None) -> tuple[float, float]:
    config = Config(api_key="tml-bench", base_url=url)
    if clients is not None:  # same connection budget, spread over more (or fewer) clients
        sampling = config.pools.sampling
        per_client = max(1, sampling.capacity // clients)
        config = config.replace(pools=config.pools.model_copy(update={"sampling": sampling.model_copy(
            update={"clients": clients, "max_connections": per_client, "max_keepalive": per_client})}))
    async with HttpLayer(config) as layer:
        return await drive(lambda: layer.request(Purpose.SAMPLING, "POST", "/api/v1/asample", content=BODY),
                           concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        print(f"zero-work server at {url}; {args.seconds:g} s per run, medians of {args.repeat} interleaved runs")
        print(f"{'client':<28} {'concurrent':>10} {'req/s':>8} {'CPU ms/req':>11}")
        for concurrency in args.concurrency:
            runs: list[tuple[str, Callable[[], Coroutine[Any, Any, tuple[float, float]]]]] = [
                ("httpx, 1 client", partial(bare_httpx, url, 1, concurrency, args.seconds)),
                (f"httpx, {args.clients} clients", partial(bare_httpx, url, args.clients, concurrency, args.seconds)),
                ("HttpLayer (default pools)", partial(http_layer, url, concurrency, args.seconds)),
                ("HttpLayer (8 clients)", partial(http_layer, url, concurrency, args.seconds, 8)),
            ]
            results: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in runs}
            for _ in range(args.repeat):
                for label, run in runs:
                    results[label].append(asyncio.run(run()))
            for label, samples in results.items():
                rate = statistics.median(r for r, _ in samples)
                cpu_ms = statistics.median(c for _, c in samples)
                print(f"{label:<28} {concurrency:>10} {rate:>8.0f} {cpu_ms:>11.2f}")
    finally:
        server.terminate()
        server.wait(timeout=5)


if __name__ == "__main__":
    main()
