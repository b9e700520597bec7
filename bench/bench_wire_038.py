"""The 0.38 wire, codec by codec: a 256 x 2048-token forward_backward built and encoded, results decoded.

Three codecs in the same run, each in a process of its own, in interleaved rounds (ours, then the
official SDK, ``--rounds`` times; medians over rounds of the medians of ``--repeat`` runs):

* ``ours-0.38``   -- ``tinker_actors.wire.v0_38.CODEC`` (protobuf; ``+zstd`` when the server asks)
* ``off-0.38``    -- the official tinker==0.38.0 SDK (its ``request_conv`` + ``SerializeToString``
  + ``zstandard``, what its ``forward_backward`` resource does; its ``response_conv`` for results),
  run by this script in the SDK's own virtualenv (``.venv-tinker038``, made by ``make test``)
* ``ours-json``   -- ``tinker_actors.wire.v0_6_3.CODEC`` (the 0.6.3 JSON body), for reference

Rows: build + encode (the user's inputs to the bytes of the body: ``Datum`` objects made from Python
lists or numpy arrays, as in bench_encode.py), encode alone (from built objects), decoding a
forward_backward result (logprobs + elementwise_loss of every token, as our service writes it), and
decoding sample results (one sequence of 16 tokens; one of 2048 tokens with 2048 prompt logprobs),
alone and then reading their lists (``tokens``, ``logprobs``, ``prompt_logprobs``) as code written for
lists does. Process CPU seconds (steadier on a busy machine than wall seconds, also printed).

The same forward_backward sent to a service and its result awaited (``.result()``), each SDK whole,
is bench_encode.py's end-to-end part.

    .venv/bin/python bench/bench_wire_038.py [--datums 256] [--tokens 2048] [--repeat 5] [--rounds 3]
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
Row = dict[str, float]


def make_inputs(datums: int, tokens: int) -> dict[str, Inputs]:
    rng = np.random.default_rng(0)
    arrays: Inputs = []
    for _ in range(datums):
        toks = rng.integers(0, 50_000, tokens + 1)
        arrays.append((toks[:-1].tolist(), toks[1:].astype(np.int64), np.ones(tokens, dtype=np.float32)))
    return {"lists": [(t, y.tolist(), w.tolist()) for t, y, w in arrays], "numpy": arrays}


def measure(fn: Callable[[], Any], repeat: int, batch: int = 1) -> Row:
    """Median seconds per call of ``fn`` over ``repeat`` timings of ``batch`` calls each."""
    fn()  # warm-up: first-call costs (imports, caches) are not what is measured
    walls, cpus = [], []
    size = 0
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batch):
            result = fn()
        walls.append((time.perf_counter() - wall) / batch)
        cpus.append((time.process_time() - cpu) / batch)
        size = len(result) if isinstance(result, bytes | bytearray) else 0
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "bytes": size}


# ---- the official SDK, in its own virtualenv ---------------------------------------------------------

def official_worker(args: argparse.Namespace, results_dir: Path) -> dict[str, Row]:
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

    def read_sample(body: bytes) -> int:
        response = response_conv.deserialize_sample_response(body)
        lists = [(sequence.tokens, sequence.logprobs) for sequence in response.sequences]
        return len(lists) + len(response.prompt_logprobs or ())

    results: dict[str, Row] = {}
    for label, inputs in make_inputs(args.datums, args.tokens).items():
        for compress in (False, True):
            key = f"{label}/{'zstd' if compress else 'plain'}"
            results[f"build+encode {key}"] = measure(
                lambda inputs=inputs, compress=compress: encode(build(inputs), compress), args.repeat)
            built = build(inputs)
            results[f"encode {key}"] = measure(lambda built=built, compress=compress: encode(built, compress),
                                               args.repeat)
    output = (results_dir / "output.pb").read_bytes()
    results["decode output"] = measure(lambda: response_conv.deserialize_forward_backward_output(output), args.repeat)
    for name in SAMPLES:
        body = (results_dir / f"{name}.pb").read_bytes()
        results[f"decode {name}"] = measure(lambda body=body: response_conv.deserialize_sample_response(body),
                                            args.repeat, batch=200)
        results[f"decode {name} + lists"] = measure(lambda body=body: read_sample(body), args.repeat, batch=200)
    return results


# ---- ours ---------------------------------------------------------------------------------------------

def our_worker(args: argparse.Namespace, results_dir: Path) -> dict[str, Row]:
    import tinker_actors.types as ours
    from tinker_actors.wire import ForwardBackwardCall, v0_6_3, v0_38

    def build(inputs: Inputs) -> ForwardBackwardCall:
        data = [ours.Datum(model_input=ours.ModelInput.from_ints(toks),
                           loss_fn_inputs={"target_tokens": target, "weights": weights})
                for toks, target, weights in inputs]
        return ForwardBackwardCall("run-0", 1, ours.ForwardBackwardInput(data=data, loss_fn="cross_entropy"))

    def read_sample(body: bytes) -> int:
        response = v0_38.CODEC.decode_sample_response(body, "application/x-protobuf")
        lists = [(sequence.tokens, sequence.logprobs) for sequence in response.sequences]
        return len(lists) + len(response.prompt_logprobs or ())

    results: dict[str, Row] = {}
    for label, inputs in make_inputs(args.datums, args.tokens).items():
        for codec_name, codec, compressions in (("0.38", v0_38.CODEC, (False, True)), ("json", v0_6_3.CODEC, (False,))):
            for compress in compressions:
                key = f"{codec_name} {label}/{'zstd' if compress else 'plain'}"
                results[f"build+encode {key}"] = measure(
                    lambda inputs=inputs, codec=codec, compress=compress:
                    codec.encode_forward_backward(build(inputs), compress=compress).body.content, args.repeat)
                built = build(inputs)
                results[f"encode {key}"] = measure(
                    lambda built=built, codec=codec, compress=compress:
                    codec.encode_forward_backward(built, compress=compress).body.content, args.repeat)
    output = (results_dir / "output.pb").read_bytes()
    results["decode output"] = measure(
        lambda: v0_38.CODEC.decode_forward_backward_output(output, "application/x-protobuf"), args.repeat)
    for name in SAMPLES:
        body = (results_dir / f"{name}.pb").read_bytes()
        results[f"decode {name}"] = measure(
            lambda body=body: v0_38.CODEC.decode_sample_response(body, "application/x-protobuf"), args.repeat,
            batch=200)
        results[f"decode {name} + lists"] = measure(lambda body=body: read_sample(body), args.repeat, batch=200)
    return results


# ---- the results both decode, written by our service's codec ----------------------------------------

SAMPLES = ("sample 16", "sample 2048")


def write_results(datums: int, tokens: int, results_dir: Path) -> None:
    import tinker_actors.types as ours
    from tinker_actors.wire import v0_38

    rng = np.random.default_rng(1)
    rows = [{"logprobs": ours.TensorData.from_numpy(-rng.random(tokens, dtype=np.float32)),
             "elementwise_loss": ours.TensorData.from_numpy(rng.random(tokens, dtype=np.float32))}
            for _ in range(datums)]
    output = ours.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", loss_fn_outputs=rows,
                                        metrics={"loss:sum": 1.0})
    (results_dir / "output.pb").write_bytes(v0_38.CODEC.encode_forward_backward_output(output).content)
    for name in SAMPLES:
        length = int(name.split()[1])
        sequence = ours.SampledSequence(stop_reason="length", tokens=rng.integers(0, 50_000, length).tolist(),
                                        logprobs=(-rng.random(length, dtype=np.float32)).tolist())
        prompt = [None, *(-rng.random(length - 1, dtype=np.float32)).tolist()] if length > 16 else None
        response = ours.SampleResponse(sequences=[sequence], prompt_logprobs=prompt)
        (results_dir / f"{name}.pb").write_bytes(v0_38.CODEC.encode_sample_response(response).content)


# ---- running and printing -----------------------------------------------------------------------------

def run_worker(python: Path, which: str, args: argparse.Namespace, results_dir: Path) -> dict[str, Row]:
    done = subprocess.run([str(python), __file__, "--worker", which, "--results-dir", str(results_dir),
                           "--datums", str(args.datums), "--tokens", str(args.tokens), "--repeat", str(args.repeat)],
                          check=True, capture_output=True, text=True, timeout=1800)
    rows: dict[str, Row] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def combine(rounds: list[dict[str, Row]]) -> dict[str, Row]:
    """The median over rounds of each row's numbers."""
    return {key: {unit: statistics.median(r[key][unit] for r in rounds) for unit in rounds[0][key]}
            for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datums", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=("ours", "official"), help=argparse.SUPPRESS)
    parser.add_argument("--results-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = our_worker if args.worker == "ours" else official_worker
        print(json.dumps(worker(args, args.results_dir)))
        return

    mine_rounds: list[dict[str, Row]] = []
    theirs_rounds: list[dict[str, Row]] = []
    with tempfile.TemporaryDirectory() as directory:
        results_dir = Path(directory)
        write_results(args.datums, args.tokens, results_dir)
        output_mb = (results_dir / "output.pb").stat().st_size / 1e6
        if not OFFICIAL_PYTHON.exists():
            print(f"official 0.38 SDK not found at {OFFICIAL_PYTHON} (make test creates it): ours only")
        for _ in range(args.rounds):
            mine_rounds.append(run_worker(Path(sys.executable), "ours", args, results_dir))
            if OFFICIAL_PYTHON.exists():
                theirs_rounds.append(run_worker(OFFICIAL_PYTHON, "official", args, results_dir))
    mine = combine(mine_rounds)
    theirs = combine(theirs_rounds) if theirs_rounds else {}

    print(f"0.38 wire: forward_backward of {args.datums} datums x {args.tokens} tokens; medians over "
          f"{args.rounds} interleaved rounds of the median of {args.repeat} runs")
    for unit in ("cpu", "wall"):
        print(f"\n{unit} seconds{'':<17} {'off-0.38':>9} {'ours-0.38':>9} {'ratio':>6} {'ours-json':>9} "
              f"{'MB 0.38':>8} {'MB json':>8}")
        for step in ("build+encode", "encode"):
            for key in ("lists/plain", "lists/zstd", "numpy/plain", "numpy/zstd"):
                official = theirs.get(f"{step} {key}")
                ours_038 = mine[f"{step} 0.38 {key}"]
                json_row = mine.get(f"{step} json {key}")
                json_mb = f"{json_row['bytes'] / 1e6:>8.1f}" if json_row else f"{'-':>8}"
                print(f"{step + ' ' + key:<30} {_cell(official, unit)} {ours_038[unit]:>9.3f} "
                      f"{_ratio(ours_038, official, unit)} {_cell(json_row, unit)} "
                      f"{ours_038['bytes'] / 1e6:>8.1f} {json_mb}")
        decoded = mine["decode output"]
        print(f"{'decode output':<30} {_cell(theirs.get('decode output'), unit)} {decoded[unit]:>9.3f} "
              f"{_ratio(decoded, theirs.get('decode output'), unit)} {'-':>9} {output_mb:>8.1f}")
    print(f"\nsample results, microseconds of CPU each{'':<5} {'off-0.38':>9} {'ours-0.38':>9} {'ratio':>6}")
    for name in SAMPLES:
        for suffix in ("", " + lists"):
            key = f"decode {name}{suffix}"
            official = theirs.get(key)
            cell = f"{official['cpu'] * 1e6:>9.1f}" if official else f"{'-':>9}"
            print(f"{key:<45} {cell} {mine[key]['cpu'] * 1e6:>9.1f} {_ratio(mine[key], official, 'cpu')}")


def _cell(row: Row | None, unit: str) -> str:
    return f"{row[unit]:>9.3f}" if row else f"{'-':>9}"


def _ratio(ours: Row, official: Row | None, unit: str) -> str:
    return f"{ours[unit] / official[unit]:>6.2f}" if official and official[unit] else f"{'-':>6}"


if __name__ == "__main__":
    main()
