"""Chunking of large forward_backward batches and combining the chunk outputs (FEATURES T3, seed gap 2).

A batch is split greedily, in order: a chunk closes when it holds ``max_datums`` datums, or when the next
datum would push its estimated size above ``max_numbers`` (a single datum larger than that forms its own
chunk). The estimate counts tokens of text chunks, bytes of image chunks, the location length of image
pointers, and every number of every loss input, as the official SDK does (0.6.3 limits: 128 / 500,000).

Combining: outputs are concatenated in order; metrics ``name:reduction`` are reduced across chunks by
their suffix: ``sum``, ``mean`` (weighted by datums per chunk), ``min``, ``max``, ``slack`` (max minus the
weighted mean), ``hash_unordered`` (order-independent hash of the values), ``unique`` (first value under
the key, the others as ``key_1``, ``key_2``...). Unlike the official SDK, an unknown reduction or a key
missing from some chunk is not silently dropped: the metric is kept from the chunks that have it and
reduced as ``mean`` (documented in docs/guides/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tinker_actors.types import (
    Datum,
    EncodedTextChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
)

__all__ = ["ChunkLimits", "combine_outputs", "estimate_size", "reduce_metrics", "split_batch"]


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
    if len(per_chunk) == 1:
        return dict(per_chunk[0])
    keys: list[str] = []
    for metrics in per_chunk:
        keys.extend(key for key in metrics if key not in keys)
    reduced: dict[str, float] = {}
    for key in keys:
        present = [(metrics[key], weight) for metrics, weight in zip(per_chunk, weights, strict=True) if key in metrics]
        values = [value for value, _ in present]
        total_weight = sum(weight for _, weight in present) or 1
        mean = sum(value * weight for value, weight in present) / total_weight
        reduction = key.rsplit(":", 1)[1] if ":" in key else "mean"
        if reduction == "sum":
            reduced[key] = math.fsum(values)
        elif reduction == "min":
            reduced[key] = min(values)
        elif reduction == "max":
            reduced[key] = max(values)
        elif reduction == "slack":
            reduced[key] = max(values) - mean
        elif reduction == "hash_unordered":
            reduced[key] = float(hash(tuple(sorted(int(v) for v in values))) % (2**53))
        elif reduction == "unique":
            reduced[key] = values[0]
            for index, value in enumerate(values[1:], start=1):
                reduced[f"{key}_{index}"] = value
        else:
            reduced[key] = mean
    return reduced


def combine_outputs(outputs: Sequence[ForwardBackwardOutput]) -> ForwardBackwardOutput:
    """One output for a chunked batch: outputs concatenated in order, metrics reduced by suffix."""
    if not outputs:
        raise ValueError("nothing to combine")
    if len(outputs) == 1:
        return outputs[0]
    weights = [len(output.loss_fn_outputs) for output in outputs]
    return ForwardBackwardOutput(
        loss_fn_output_type=outputs[0].loss_fn_output_type,
        loss_fn_outputs=[entry for output in outputs for entry in output.loss_fn_outputs],
        metrics=reduce_metrics([output.metrics for output in outputs], weights),
    )
