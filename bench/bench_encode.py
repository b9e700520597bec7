"""Build + encode a forward_backward request of 256 datums x 2048 tokens: ours against the official SDK.

Both sides get the same inputs (Python lists, and numpy arrays) and produce the bytes that go on the wire:
the official SDK as it does (pydantic ``model_dump(exclude_unset=True, mode="json")`` then httpx's compact
``json.dumps``), ours with ``tinker_actors.types.encode_json``. Prints medians and the ratio (goal <= 0.5).

    .venv/bin/python bench/bench_encode.py [--datums 256] [--tokens 2048] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tinker_actors.types as ours


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datums", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
