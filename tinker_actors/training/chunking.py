"""Chunking of large forward_backward batches and combining the chunk outputs (FEATURES T3, seed gap 2).

A batch is split greedily, in order: a chunk closes when it holds ``max_datums`` datums, or when the next
datum would push its estimated size above ``max_numbers`` (a single datum larger than that forms its own
chunk). The estimate counts tokens of text chunks, bytes of image chunks, the location length of image
pointers, and every number of every loss input, as the official SDK does (0.6.3 limits: 128 / 500,000).

Combining (also of a single chunk, and of none): outputs are concatenated in order; each metric
``name:reduction`` is reduced across chunks by its suffix, with the same numbers as the official SDK 0.6.3:
``sum``, ``mean`` (weighted by the number of outputs of each chunk), ``min``, ``max``, ``slack`` (max minus
the weighted mean), ``hash_unordered`` (Python's ``hash`` of the sorted integer values, as a float),
``unique`` (the first value under the key, the others as ``key_1``, ``key_2``...). Like the official SDK we
reduce a single chunk too, so a one-chunk batch gets the same figures from both SDKs (its ``slack`` is 0,
its ``hash_unordered`` the hash of the 1-tuple of its value). No chunk at all (an empty batch): an empty output.
Unlike the official SDK, an unknown reduction or a key missing from some chunk is not silently dropped: the
metric is kept from the chunks that have it and reduced as a weighted ``mean`` (unchanged if only one chunk
has it); documented in docs/architecture.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tinker_actors.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
)

__all__ = ["ChunkLimits", "combine_outputs", "empty_output", "estimate_size", "reduce_metrics", "split_batch"]


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    max_datums: int = 128
    max_numbers: int = 500_000

    def __post_init__(self) -> None:
        if self.max_datums < 1 or self.max_numbers < 1:
            raise ValueError("chunk limits must be positive")


def estimate_size(datum: Datum) -> int:
    size = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            size += len(chunk.tokens)
        elif isinstance(chunk, ImageChunk):
            size += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            size += len(chunk.location)
    return size + sum(len(tensor.data) for tensor in datum.loss_fn_inputs.values())


def split_batch(data: Sequence[Datum], limits: ChunkLimits = ChunkLimits()) -> list[list[Datum]]:
    chunks: list[list[Datum]] = []
    current: list[Datum] = []
    current_size = 0
    for datum in data:
        size = estimate_size(datum)
        if current and (len(current) >= limits.max_datums or current_size + size > limits.max_numbers):
            chunks.append(current)
            current, current_size = [], 0
        current.append(datum)
        current_size += size
    if current:
        chunks.append(current)
    return chunks


def reduce_metrics(per_chunk: Sequence[dict[str, float]], weights: Sequence[int]) -> dict[str, float]:
    """Reduce each ``name:reduction`` metric across chunks (see the module docstring)."""
    keys: list[str] = []
    for metrics in per_chunk:
        keys.extend(key for key in metrics if key not in keys)
    reduced: dict[str, float] = {}
    for key in keys:
        present = [(metrics[key], weight) for metrics, weight in zip(per_chunk, weights, strict=True) if key in metrics]
        values = [value for value, _ in present]
        reduction = key.rsplit(":", 1)[1] if ":" in key else ""
        if len(present) < len(per_chunk) or reduction not in _REDUCTIONS:
            reduced[key] = values[0] if len(values) == 1 else _mean(values, [weight for _, weight in present])
        elif reduction == "unique":
            reduced[key] = values[0]
            for index, value in enumerate(values[1:], start=1):
                reduced[f"{key}_{index}"] = value
        elif reduction in ("mean", "slack"):
            reduced[key] = _REDUCTIONS[reduction](values, weights)
        else:
            reduced[key] = _REDUCTIONS[reduction](values, None)
    return reduced


# numpy, as the official SDK, so that sums and weighted means round exactly as its do.

def _mean(values: Sequence[float], weights: Sequence[int] | None) -> float:
    if not weights or sum(weights) == 0:  # chunks without outputs (the official SDK would divide by zero)
        return float(np.mean(values))
    return float(np.average(values, weights=weights))


def _slack(values: Sequence[float], weights: Sequence[int] | None) -> float:
    return float(np.max(values) - _mean(values, weights))


def _hash_unordered(values: Sequence[float], _: Sequence[int] | None) -> float:
    if not all(math.isfinite(value) for value in values):
        return math.nan  # the official SDK raises here, failing the whole batch; we keep the outputs
    return float(hash(tuple(sorted(int(value) for value in values))))


_REDUCTIONS: dict[str, Callable[[Sequence[float], Sequence[int] | None], float]] = {
    "sum": lambda values, _: float(np.sum(values)),
    "mean": _mean,
    "min": lambda values, _: float(np.min(values)),
    "max": lambda values, _: float(np.max(values)),
    "slack": _slack,
    "hash_unordered": _hash_unordered,
    "unique": lambda values, _: values[0],  # never called: unique spreads its values over several keys
}


def empty_output() -> ForwardBackwardOutput:
    """What a batch of no datums gives (nothing is sent), as in the official SDK."""
    return ForwardBackwardOutput(loss_fn_output_type="", loss_fn_outputs=[], metrics={})


def combine_outputs(outputs: Sequence[ForwardBackwardOutput]) -> ForwardBackwardOutput:
    """One output for a batch: chunk outputs concatenated in order, metrics reduced by suffix (also for one
    chunk, as the official SDK does); no outputs give :func:`empty_output`."""
    if not outputs:
        return empty_output()
    weights = [len(output.loss_fn_outputs) for output in outputs]
    return ForwardBackwardOutput(
        loss_fn_output_type=outputs[0].loss_fn_output_type,
        loss_fn_outputs=[entry for output in outputs for entry in output.loss_fn_outputs],
        metrics=reduce_metrics([output.metrics for output in outputs], weights),
    )
