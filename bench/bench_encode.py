"""A forward_backward of 256 datums x 2048 tokens: ours against the official SDKs, in two parts.

**Encode** (in this process): the same inputs (Python lists, numpy arrays) turned into the bytes of the
0.6.3 JSON body, the official SDK 0.6.3 as it does (pydantic ``model_dump(exclude_unset=True,
mode="json")`` then httpx's compact ``json.dumps``), ours with ``tinker_actors.types.encode_json``.

**End to end** (``--end-to-end``, on by default): what a user waits for. The datums are built from numpy
inputs and ``training_client.forward_backward(data, "cross_entropy").result()`` is called against the
local service in zero-work mode (its own process; a wide zero-work model takes 2048-token datums): the
request built, chunked, encoded, sent, and its result (logprobs and elementwise loss of every token)
polled and decoded. Each client runs in its own process, so its CPU time is its own:

* ``ours-0.38`` / ``ours-0.6.3``: tinker-actors pinned to each protocol
* ``official-0.38``: the official tinker==0.38.0 SDK, run by the interpreter of its own virtualenv
  (``.venv-tinker038``, made by ``make test``); protobuf, its default pyqwest transport
* ``official-0.6.3``: the official tinker==0.6.3 SDK of this virtualenv (the ``compat`` extra)

Medians of ``--repeat`` calls after one warm-up call; the goal is ours-0.38 <= 0.5x official-0.38.

    .venv/bin/python bench/bench_encode.py [--datums 256] [--tokens 2048] [--repeat 7] [--no-end-to-end]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OFFICIAL_038_PYTHON = Path(__file__).resolve().parents[1] / ".venv-tinker038" / "bin" / "python"
WIDE_MODEL = "bench-wide"  # a zero-work model with room for 2048-token datums and 50,000 token ids
END_TO_END = ("ours-0.38", "ours-0.6.3", "official-0.38", "official-0.6.3", "floor")


def official_encode(types: Any, inputs: list[tuple[Any, Any, Any]]) -> bytes:
    data = [types.Datum(model_input=types.ModelInput.from_ints(toks),
                        loss_fn_inputs={"target_tokens": target, "weights": weights})
            for toks, target, weights in inputs]
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
        model_id="run-0", seq_id=1)
    body = request.model_dump(exclude_unset=True, mode="json")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def our_encode(inputs: list[tuple[Any, Any, Any]]) -> bytes:
    import tinker_actors.types as ours  # here: the official 0.38 interpreter runs this file too, without it

    data = [ours.Datum(model_input=ours.ModelInput.from_ints(toks),
                       loss_fn_inputs={"target_tokens": target, "weights": weights})
            for toks, target, weights in inputs]
    request = ours.ForwardBackwardRequest(
        forward_backward_input=ours.ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
        model_id="run-0", seq_id=1)
    return ours.encode_json(request)


def median_seconds(fn: Callable[[], bytes], repeat: int) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


# ---- end to end: a zero-work service in its own process, each client in its own process ---------------

def serve() -> None:
    """Run a zero-work local service with a wide model until stdin closes; print its address first."""
    from tinker_actors.local import LocalService
    from tinker_actors.local.engine.backend import BaseModelDescription, ZeroWorkBackend

    class WideZeroWork(ZeroWorkBackend):
        model = BaseModelDescription(WIDE_MODEL, "zero-work (no model)", "tinker-actors/tiny-byte", 65_536, 4096)

        def base_models(self) -> list[BaseModelDescription]:
            return [self.model]

        def describe(self, base_model: str) -> BaseModelDescription:
            return self.model

    with LocalService(backend=WideZeroWork(), long_poll_s=5.0, session_timeout_s=3600.0,
                      max_body_bytes=256 * 1024 * 1024) as service:
        print(json.dumps({"url": service.base_url, "api_key": service.api_key}), flush=True)
        sys.stdin.read()


def numpy_inputs(datums: int, tokens: int) -> list[tuple[Any, Any, Any]]:
    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(datums):
        toks = rng.integers(0, 50_000, tokens + 1)
        inputs.append((toks[:-1].tolist(), toks[1:].astype(np.int64), np.ones(tokens, dtype=np.float32)))
    return inputs


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (the service), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end_child(kind: str, url: str, api_key: str, datums: int, tokens: int, repeat: int,
                     server_pid: int) -> dict[str, float]:
    """``repeat`` timed forward_backward calls (after one warm-up) of one client; medians of wall and CPU, and
    the service's CPU per call."""
    inputs = numpy_inputs(datums, tokens)
    if kind == "floor":
        return floor_child(url, api_key, inputs, repeat, server_pid)
    if kind.startswith("ours"):
        import tinker_actors as sdk

        service: Any = sdk.ServiceClient(base_url=url, api_key=api_key, protocol=kind.removeprefix("ours-"),
                                         telemetry_enabled=False)
        types: Any = sdk
        training = service.create_lora_training_client(WIDE_MODEL, rank=8).result()
    else:
        import tinker as sdk

        service = sdk.ServiceClient(base_url=url, api_key=api_key)
        types = sdk.types
        training = service.create_lora_training_client(base_model=WIDE_MODEL, rank=8).result()
        if hasattr(training, "result"):  # 0.38: creation returns a future
            training = training.result()

    def call() -> int:
        data = [types.Datum(model_input=types.ModelInput.from_ints(toks),
                            loss_fn_inputs={"target_tokens": target, "weights": weights})
                for toks, target, weights in inputs]
        return len(training.forward_backward(data, "cross_entropy").result().loss_fn_outputs)

    assert call() == datums  # warm-up: connections, caches
    walls, cpus = [], []
    server_cpu = process_cpu_seconds(server_pid)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    server_cpu = process_cpu_seconds(server_pid) - server_cpu
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "server_cpu": server_cpu / repeat}


def floor_child(url: str, api_key: str, inputs: list[tuple[Any, Any, Any]], repeat: int,
                server_pid: int) -> dict[str, float]:
    """What no client can go below: the batch's chunks encoded beforehand (untimed), then only POSTed one
    after the other and their protobuf results polled and read (not decoded), on the lean transport with
    the fewest headers. The rest of the time is the service's."""
    import asyncio

    import httpx

    import tinker_actors as sdk
    from tinker_actors.http.lean_client import LeanClient
    from tinker_actors.http.transport import LeanTransport
    from tinker_actors.wire import v0_38

    data = [sdk.Datum(model_input=sdk.ModelInput.from_ints(toks), loss_fn_inputs={"target_tokens": y, "weights": w})
            for toks, y, w in inputs]
    halves = [data[: len(data) // 2], data[len(data) // 2:]]
    with sdk.ServiceClient(base_url=url, api_key=api_key, protocol="0.38", telemetry_enabled=False) as service:
        model_id = service.create_lora_training_client(WIDE_MODEL, rank=8).result().model_id
        prepared = [v0_38.CODEC.prepare_forward_backward(model_id, sdk.types.ForwardBackwardInput(
            data=half, loss_fn="cross_entropy")) for half in halves]
        seq_ids = iter(range(1, 1_000_000))

        async def measure() -> dict[str, float]:
            headers = {"x-api-key": api_key}
            transport = LeanTransport(max_connections=8, max_keepalive=8)
            async with LeanClient(transport, headers=headers, timeout=120) as client:
                async def call(bodies: list[bytes]) -> None:
                    futures = []
                    for body in bodies:
                        answer = await client.request("POST", url + "/api/v1/forward_backward", content=body,
                                                      headers={"content-type": "application/x-protobuf"})
                        futures.append(answer.raise_for_status().json()["request_id"])
                    for request_id in futures:
                        poll = json.dumps({"request_id": request_id, "allow_metadata_only": False}).encode()
                        while True:
                            result = await client.request("POST", url + "/api/v1/retrieve_future", content=poll,
                                                          headers={"accept": "application/x-protobuf",
                                                                   "content-type": "application/json"})
                            if result.status_code == 200 and not result.headers["content-type"].endswith("json"):
                                break
                            if result.status_code not in (200, 408):
                                raise httpx.HTTPStatusError("poll failed", request=result.request, response=result)

                def bodies() -> list[bytes]:
                    return [request.body(next(seq_ids)).content for request in prepared]

                await call(bodies())  # warm-up
                walls, cpus = [], []
                server_cpu = process_cpu_seconds(server_pid)
                for _ in range(repeat):
                    ready = bodies()
                    wall, cpu = time.perf_counter(), time.process_time()
                    await call(ready)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                server_cpu = process_cpu_seconds(server_pid) - server_cpu
            return {"wall": statistics.median(walls), "cpu": statistics.median(cpus),
                    "server_cpu": server_cpu / repeat}

        return asyncio.run(measure())


def end_to_end(args: argparse.Namespace) -> None:
    env = {**os.environ, "TINKER_TELEMETRY": "0"}
    env.pop("TINKER_API_KEY", None)
    env.pop("TINKER_BASE_URL", None)
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    assert server.stdin is not None and server.stdout is not None
    info = json.loads(server.stdout.readline())
    runs: dict[str, list[dict[str, float]]] = {}
    kinds = [kind for kind in args.clients if kind != "official-0.38" or OFFICIAL_038_PYTHON.exists()]
    if "official-0.38" in args.clients and "official-0.38" not in kinds:
        print(f"official-0.38: {OFFICIAL_038_PYTHON} not found (make test creates it): left out")
    sends = None
    try:
        for _ in range(args.rounds):  # interleaved: one process of each client per round
            for kind in kinds:
                python = OFFICIAL_038_PYTHON if kind == "official-0.38" else Path(sys.executable)
                done = subprocess.run([str(python), __file__, "--child", kind, "--url", info["url"], "--api-key",
                                       info["api_key"], "--datums", str(args.datums), "--tokens", str(args.tokens),
                                       "--repeat", str(args.repeat), "--server-pid", str(server.pid)],
                                      capture_output=True, text=True, env=env, timeout=1800)
                if done.returncode != 0:
                    print(f"{kind} failed:\n{done.stderr[-2000:]}")
                    continue
                runs.setdefault(kind, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
        if args.chunk_sends:
            sends = chunk_sends(info["url"], info["api_key"], args)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    results = {kind: {unit: statistics.median(run[unit] for run in kind_runs) for unit in ("wall", "cpu", "server_cpu")}
               for kind, kind_runs in runs.items()}
    base = results.get("official-0.38")
    print(f"\nend to end: forward_backward(...).result() of {args.datums} x {args.tokens} tokens (numpy inputs) "
          f"against the zero-work service; medians over {args.rounds} interleaved rounds of the median of "
          f"{args.repeat} calls (spread: the lowest and highest round)")
    print(f"{'client':<16} {'wall s':>8} {'wall spread':>14} {'CPU s':>8} {'service CPU s':>14} "
          f"{'wall x off-0.38':>16} {'CPU x off-0.38':>15}")
    for kind, row in results.items():
        walls = [run["wall"] for run in runs[kind]]
        ratios = [f"{row[unit] / base[unit]:.2f}" if base else "-" for unit in ("wall", "cpu")]
        print(f"{kind:<16} {row['wall']:>8.3f} {min(walls):>6.3f}-{max(walls):<7.3f} {row['cpu']:>8.3f} "
              f"{row['server_cpu']:>14.3f} {ratios[0]:>16} {ratios[1]:>15}")
    if "floor" in results:
        print("floor: the chunks encoded beforehand, only sent and their results read (no client goes below it)")
    if sends is not None:
        print(f"\nthe batch's two protobuf chunks ({sends['mb']:.1f} MB each) POSTed one after the other: "
              f"{sends['serial']:.3f} s; both at once: {sends['together']:.3f} s (median of {args.repeat})")


def chunk_sends(url: str, api_key: str, args: argparse.Namespace) -> dict[str, float]:
    """What sending a batch's chunks together instead of one after the other would gain (docs/protocols.md):
    the two halves of the batch as 0.38 requests, POSTed in order, then concurrently, each to a new model."""
    import asyncio

    import httpx

    import tinker_actors as sdk
    from tinker_actors.wire import v0_38

    inputs = numpy_inputs(args.datums, args.tokens)
    data = [sdk.Datum(model_input=sdk.ModelInput.from_ints(toks), loss_fn_inputs={"target_tokens": y, "weights": w})
            for toks, y, w in inputs]
    halves = [data[: len(data) // 2], data[len(data) // 2:]]

    with sdk.ServiceClient(base_url=url, api_key=api_key, protocol="0.38", telemetry_enabled=False) as service:
        def bodies() -> list[bytes]:  # a fresh model each time: its seq ids start at 1
            model_id = service.create_lora_training_client(WIDE_MODEL, rank=8).result().model_id
            return [v0_38.CODEC.prepare_forward_backward(
                model_id, sdk.types.ForwardBackwardInput(data=half, loss_fn="cross_entropy")).body(seq).content
                for seq, half in enumerate(halves, start=1)]

        async def measure() -> dict[str, float]:
            headers = {"x-api-key": api_key, "content-type": "application/x-protobuf"}
            serial, together = [], []
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
                for _ in range(args.repeat):
                    first, second = bodies()
                    started = time.perf_counter()
                    (await client.post("/api/v1/forward_backward", content=first)).raise_for_status()
                    (await client.post("/api/v1/forward_backward", content=second)).raise_for_status()
                    serial.append(time.perf_counter() - started)
                    first, second = bodies()
                    started = time.perf_counter()
                    for answer in await asyncio.gather(client.post("/api/v1/forward_backward", content=first),
                                                       client.post("/api/v1/forward_backward", content=second)):
                        answer.raise_for_status()
                    together.append(time.perf_counter() - started)
            return {"serial": statistics.median(serial), "together": statistics.median(together),
                    "mb": len(first) / 1e6}

        return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datums", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7, help="calls per process (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved end-to-end rounds (a process each)")
    parser.add_argument("--clients", nargs="+", choices=END_TO_END, default=list(END_TO_END),
                        help="end-to-end clients")
    parser.add_argument("--no-chunk-sends", dest="chunk_sends", action="store_false",
                        help="skip the chunks-sent-together measurement")
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false")
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=END_TO_END, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.child:
        print(json.dumps(end_to_end_child(args.child, args.url, args.api_key, args.datums, args.tokens, args.repeat,
                                          args.server_pid)))
        os._exit(0)  # the official SDKs' background threads can delay a normal exit
    rng = np.random.default_rng(0)
    array_inputs = []
    for _ in range(args.datums):
        toks = rng.integers(0, 50_000, args.tokens + 1)
        array_inputs.append((toks[:-1].tolist(), toks[1:].astype(np.int64), np.ones(args.tokens, dtype=np.float32)))
    list_inputs = [(t, y.tolist(), w.tolist()) for t, y, w in array_inputs]
    # float64 weights with one decimal, as RL advantages often are: written as given (0.1, not 0.10000000149...)
    f64_inputs = [(t, y, np.round(rng.normal(size=args.tokens), 1)) for t, y, _ in array_inputs]
    try:
        import tinker
    except ImportError:
        tinker = None
        print("official SDK not installed (pip install -e '.[compat]'): printing ours only")
    print(f"forward_backward request: {args.datums} datums x {args.tokens} tokens, median of {args.repeat}")
    print(f"{'inputs':<8} {'official s':>11} {'ours s':>9} {'ratio':>7} {'MB':>6}")
    for label, inputs in (("lists", list_inputs), ("numpy", array_inputs), ("numpy64", f64_inputs)):
        mine, size = median_seconds(lambda inputs=inputs: our_encode(inputs), args.repeat)
        if tinker is not None:
            theirs, _ = median_seconds(lambda inputs=inputs: official_encode(tinker.types, inputs), args.repeat)
            print(f"{label:<8} {theirs:>11.3f} {mine:>9.3f} {mine / theirs:>7.2f} {size / 1e6:>6.1f}")
        else:
            print(f"{label:<8} {'-':>11} {mine:>9.3f} {'-':>7} {size / 1e6:>6.1f}")
    if args.end_to_end:
        end_to_end(args)


if __name__ == "__main__":
    main()
