"""Benchmark of the local service (a script, not a test).

1. forward_backward tokens/s of the tiny numpy model through HTTP (in-process service; one
   forward_backward + optim_step per step, polled with retrieve_future).
2. Zero-work mode: samples/s (one ``asample`` + one ``retrieve_future`` each) with a bare httpx
   asyncio client, the service running in its own process (``tinker-actors local serve --zero-work``)
   so that client and server do not share a GIL. Server CPU per request is read from /proc.

    .venv/bin/python bench/bench_local_service.py [--seconds 5] [--concurrency 64] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from tinker_actors.local import LocalService
from tinker_actors.local.model import CORPUS_PATH, load_tokenizer

SESSION = {"tags": [], "user_metadata": {}, "sdk_version": "bench"}


def _result(client: httpx.Client, request_id: str) -> dict[str, Any]:
    while True:
        response = client.post("/api/v1/retrieve_future", json={"request_id": request_id})
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            if "error" in body:
                raise RuntimeError(body["error"])
            return body


def bench_forward_backward(seconds: float, batch: int, length: int) -> None:
    tokens = load_tokenizer("tiny-byte").encode(CORPUS_PATH.read_text()).ids
    data = []
    for i in range(batch):
        window = tokens[i * length: i * length + length + 1]
        data.append({"model_input": {"chunks": [{"tokens": window[:-1]}]},
                     "loss_fn_inputs": {"target_tokens": {"data": window[1:], "dtype": "int64",
                                                          "shape": [length]}}})
    with LocalService(long_poll_s=10.0) as svc, httpx.Client(
            base_url=svc.base_url, headers={"X-API-Key": svc.api_key}, timeout=60) as client:
        session_id = client.post("/api/v1/create_session", json=SESSION).json()["session_id"]
        created = client.post("/api/v1/create_model", json={
            "session_id": session_id, "model_seq_id": 0, "base_model": "tiny-byte", "user_metadata": None,
            "lora_config": {"rank": 16, "seed": None, "train_unembed": True, "train_mlp": True,
                            "train_attn": True}}).json()
        model_id = _result(client, created["request_id"])["model_id"]
        seq = 0
        steps = 0
        losses: list[float] = []
        warmup = 3  # the first steps build caches (base weights, attention masks); not timed
        started = time.perf_counter()
        while steps < warmup or time.perf_counter() - started < seconds:
            if steps == warmup:
                started = time.perf_counter()
            seq += 1
            fwdbwd = client.post("/api/v1/forward_backward", json={
                "forward_backward_input": {"data": data, "loss_fn": "cross_entropy", "loss_fn_config": None},
                "model_id": model_id, "seq_id": seq}).json()["request_id"]
            seq += 1
            optim = client.post("/api/v1/optim_step", json={
                "adam_params": {"learning_rate": 5e-3}, "model_id": model_id, "seq_id": seq}).json()["request_id"]
            losses.append(_result(client, fwdbwd)["metrics"]["loss:sum"] / (batch * length))
            _result(client, optim)
            steps += 1
        elapsed = time.perf_counter() - started
    steps -= warmup
    print(f"forward_backward through HTTP: {batch} x {length} tokens per step, {steps} steps in {elapsed:.2f} s "
          f"(after {warmup} warm-up steps)")
    print(f"  {steps * batch * length / elapsed:,.0f} tokens/s, {1000 * elapsed / steps:.1f} ms per "
          f"forward_backward+optim_step; loss/token {losses[0]:.3f} -> {losses[-1]:.3f}")


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def _sample_loop(base_url: str, api_key: str, seconds: float, concurrency: int, n_clients: int) -> int:
    headers = {"X-API-Key": api_key}
    limits = httpx.Limits(max_connections=max(1, concurrency // n_clients) + 4)
    clients = [httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30)
               for _ in range(n_clients)]
    try:
        session_id = (await clients[0].post("/api/v1/create_session", json=SESSION)).json()["session_id"]
        sampler = (await clients[0].post("/api/v1/create_sampling_session", json={
            "session_id": session_id, "sampling_session_seq_id": 0, "base_model": "tiny-byte",
            "model_path": None})).json()["sampling_session_id"]
        done = 0
        seq = 0
        deadline = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal done, seq
            while time.perf_counter() < deadline:
                seq += 1
                submitted = await client.post("/api/v1/asample", json={
                    "num_samples": 1, "prompt": {"chunks": [{"tokens": [1, 2, 3]}]},
                    "sampling_params": {"max_tokens": 4}, "sampling_session_id": sampler, "seq_id": seq,
                    "prompt_logprobs": False, "topk_prompt_logprobs": 0})
                request_id = submitted.json()["request_id"]
                while (await client.post("/api/v1/retrieve_future",
                                         json={"request_id": request_id})).status_code != 200:
                    pass
                done += 1

        await asyncio.gather(*(worker(clients[i % n_clients]) for i in range(concurrency)))
        return done
    finally:
        for client in clients:
            await client.aclose()


def bench_zero_work(seconds: float, concurrency: int, n_clients: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tinker_actors.cli", "local", "serve", "--zero-work", "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        base_url = banner.split(" on ")[1].split(" ")[0]
        for clients in sorted({1, n_clients}):
            cpu_before = _cpu_seconds(process.pid)
            started = time.perf_counter()
            samples = asyncio.run(_sample_loop(base_url, "bench", seconds, concurrency, clients))
            elapsed = time.perf_counter() - started
            cpu_after = _cpu_seconds(process.pid)
            server = ""
            if cpu_before is not None and cpu_after is not None and samples:
                server = f", server CPU {1000 * (cpu_after - cpu_before) / (2 * samples):.2f} ms per request"
            print(f"zero-work asample+retrieve_future, {concurrency} concurrent, {clients} httpx client(s): "
                  f"{samples / elapsed:,.0f} samples/s = {2 * samples / elapsed:,.0f} requests/s{server}")
    finally:
        process.terminate()
        process.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    bench_forward_backward(args.seconds, args.batch, args.length)
    bench_zero_work(args.seconds, args.concurrency, args.clients)


if __name__ == "__main__":
    main()
