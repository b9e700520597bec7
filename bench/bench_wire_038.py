"""The 0.38 wire: a forward_backward of 256 datums x 2048 tokens built and encoded, and its result decoded.

Three encoders in the same run:

* ``ours-0.38``   -- ``tinker_actors.wire.v0_38.CODEC`` (protobuf; ``+zstd`` when the server asks)
* ``off-0.38``    -- the official tinker==0.38.0 SDK (its ``request_conv`` + ``SerializeToString``
  + ``zstandard``, what its ``forward_backward`` resource does), run by this same script in the
  SDK's own virtualenv (``.venv-tinker038``, made by ``make test``/``make bench``) as a subprocess
* ``ours-json``   -- ``tinker_actors.wire.v0_6_3.CODEC`` (the 0.6.3 JSON body), for reference

Inputs are Python lists (tokens, targets, weights) or numpy arrays (targets, weights), as in
bench_encode.py. Rows: build + encode (user objects to bytes), encode alone (from a built request),
and decoding the result (logprobs + elementwise_loss of every token) that our service encodes.
Medians of ``--repeat`` runs; wall seconds and process CPU seconds (steadier on a busy machine).

    .venv/bin/python bench/bench_wire_038.py [--datums 256] [--tokens 2048] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_PYTHON = REPO / ".venv-tinker038" / "bin" / "python"
Inputs = list[tuple[Any, Any, Any]]


def make_inputs(datums: int, tokens: int) -> dict[str, Inputs]:
    rng = np.random.default_rng(0)
    arrays: Inputs = []
    for _ in range(datums):
        toks = rng.integers(0, 50_000, tokens + 1)
        arrays.append((toks[:-1].tolist(), toks[1:].astype(np.int64), np.ones(tokens, dtype=np.float32)))
    return {"lists": [(t, y.tolist(), w.tolist()) for t, y, w in arrays], "numpy": arrays}


def measure(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    walls, cpus = [], []
    size = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        size = len(result) if isinstance(result, bytes | bytearray) else 0
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "bytes": size}


# ---- the official SDK, in its own virtualenv ---------------------------------------------------------

def official_worker(datums: int, tokens: int, repeat: int, output_path: str) -> dict[str, Any]:
    import zstandard
    from tinker import types
    from tinker.proto import request_conv, response_conv

    def build(inputs: Inputs) -> Any:
        data = [types.Datum(model_input=types.ModelInput.from_ints(toks),
                            loss_fn_inputs={"target_tokens": target, "weights": weights})
                for toks, target, weights in inputs]
        return types.ForwardBackwardRequest(
            forward_backward_input=types.ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
            model_id="run-0", seq_id=1)

    def encode(request: Any, compress: bool) -> bytes:
        body: bytes = request_conv.forward_backward_request_to_proto(request).SerializeToString()
        return zstandard.ZstdCompressor().compress(body) if compress else body

    results: dict[str, Any] = {}
    for label, inputs in make_inputs(datums, tokens).items():
        for compress in (False, True):
            key = f"{label}/{'zstd' if compress else 'plain'}"
            results[f"build+encode {key}"] = measure(
                lambda inputs=inputs, compress=compress: encode(build(inputs), compress), repeat)
            built = build(inputs)
            results[f"encode {key}"] = measure(lambda built=built, compress=compress: encode(built, compress), repeat)
    output = Path(output_path).read_bytes()
    results["decode output"] = measure(lambda: response_conv.deserialize_forward_backward_output(output), repeat)
    return results


# ---- ours ---------------------------------------------------------------------------------------------

def our_results(datums: int, tokens: int, repeat: int, output: bytes) -> dict[str, Any]:
    import tinker_actors.types as ours
    from tinker_actors.wire import ForwardBackwardCall, v0_6_3, v0_38

    def build(inputs: Inputs) -> ForwardBackwardCall:
        data = [ours.Datum(model_input=ours.ModelInput.from_ints(toks),
                           loss_fn_inputs={"target_tokens": target, "weights": weights})
                for toks, target, weights in inputs]
        return ForwardBackwardCall("run-0", 1, ours.ForwardBackwardInput(data=data, loss_fn="cross_entropy"))

    results: dict[str, Any] = {}
    for label, inputs in make_inputs(datums, tokens).items():
        for codec_name, codec, compressions in (("0.38", v0_38.CODEC, (False, True)), ("json", v0_6_3.CODEC, (False,))):
            for compress in compressions:
                key = f"{codec_name} {label}/{'zstd' if compress else 'plain'}"
                results[f"build+encode {key}"] = measure(
                    lambda inputs=inputs, codec=codec, compress=compress:
                    codec.encode_forward_backward(build(inputs), compress=compress).body.content, repeat)
                built = build(inputs)
                results[f"encode {key}"] = measure(
                    lambda built=built, codec=codec, compress=compress:
                    codec.encode_forward_backward(built, compress=compress).body.content, repeat)
    results["decode output"] = measure(
        lambda: v0_38.CODEC.decode_forward_backward_output(output, "application/x-protobuf"), repeat)
    return results


def result_bytes(datums: int, tokens: int) -> bytes:
    """What our service answers for the batch: float32 logprobs and elementwise_loss of every token."""
    import tinker_actors.types as ours
    from tinker_actors.wire import v0_38

    rng = np.random.default_rng(1)
    rows = [{"logprobs": ours.TensorData.from_numpy(-rng.random(tokens, dtype=np.float32)),
             "elementwise_loss": ours.TensorData.from_numpy(rng.random(tokens, dtype=np.float32))}
            for _ in range(datums)]
    output = ours.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=rows,
                                        metrics={"loss:sum": 1.0})
    return v0_38.CODEC.encode_forward_backward_output(output).content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datums", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--official-worker", metavar="OUTPUT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_worker:
        print(json.dumps(official_worker(args.datums, args.tokens, args.repeat, args.official_worker)))
        return

    output = result_bytes(args.datums, args.tokens)
    theirs: dict[str, Any] = {}
    if OFFICIAL_PYTHON.exists():
        with tempfile.NamedTemporaryFile(suffix=".pb") as output_file:
            output_file.write(output)
            output_file.flush()
            done = subprocess.run([str(OFFICIAL_PYTHON), __file__, "--official-worker", output_file.name,
                                   "--datums", str(args.datums), "--tokens", str(args.tokens),
                                   "--repeat", str(args.repeat)], check=True, capture_output=True, text=True)
        theirs = json.loads(done.stdout)
    else:
        print(f"official 0.38 SDK not found at {OFFICIAL_PYTHON} (make bench creates it): ours only")
    mine = our_results(args.datums, args.tokens, args.repeat, output)

    print(f"0.38 wire: forward_backward of {args.datums} datums x {args.tokens} tokens; median of {args.repeat}")
    for unit in ("wall", "cpu"):
        print(f"\n{unit} seconds        {'off-0.38':>9} {'ours-0.38':>9} {'ratio':>6} {'ours-json':>9} "
              f"{'MB 0.38':>8} {'MB json':>8}")
        for step in ("build+encode", "encode"):
            for key in ("lists/plain", "lists/zstd", "numpy/plain", "numpy/zstd"):
                official = theirs.get(f"{step} {key}")
                ours_038 = mine[f"{step} 0.38 {key}"]
                json_row = mine.get(f"{step} json {key}")
                json_mb = f"{json_row['bytes'] / 1e6:>8.1f}" if json_row else f"{'-':>8}"
                print(f"{step + ' ' + key:<26} {_cell(official, unit)} {ours_038[unit]:>9.3f} "
                      f"{_ratio(ours_038, official, unit)} {_cell(json_row, unit)} "
                      f"{ours_038['bytes'] / 1e6:>8.1f} {json_mb}")
        official = theirs.get("decode output")
        decoded = mine["decode output"]
        print(f"{'decode output':<26} {_cell(official, unit)} {decoded[unit]:>9.3f} {_ratio(decoded, official, unit)}"
              f" {'-':>9} {len(output) / 1e6:>8.1f}")


def _cell(row: dict[str, float] | None, unit: str) -> str:
    return f"{row[unit]:>9.3f}" if row else f"{'-':>9}"


def _ratio(ours: dict[str, float], official: dict[str, float] | None, unit: str) -> str:
    return f"{ours[unit] / official[unit]:>6.2f}" if official and official[unit] else f"{'-':>6}"


if __name__ == "__main__":
    sys.exit(main())
