"""Chunking of large forward_backward batches and combining the chunk outputs (FEATURES T3, seed gap 2).

A batch is split greedily, in order: a chunk closes when it holds ``max_datums`` datums, or when the next
datum would push one of its estimated sizes above its limit (a single datum larger than that forms its own
chunk). Two estimates, as the official SDKs make them: ``max_numbers`` (0.6.3) counts tokens of text chunks,
bytes of image chunks, the location length of image pointers, and every number of every loss input
(0.6.3 limits: 128 datums / 500,000); ``max_bytes`` (0.38) counts the bytes those take in the protobuf
request, before compression: 4 per token, the image bytes, the pointer's location, 4 or 8 per loss-input
number by its dtype (0.38 limits, announced by the server: 1024 datums / 5,000,000 bytes).

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

__all__ = [
    "ChunkLimits",
    "combine_outputs",
    "empty_output",
    "estimate_bytes",
    "estimate_size",
    "reduce_metrics",
    "split_batch",
]


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """How a forward_backward batch is split; ``None`` for a size limit means "not limited by it"."""

    max_datums: int = 128
    max_numbers: int | None = 500_000
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_datums < 1 or any(limit is not None and limit < 1 for limit in (self.max_numbers,
                                                                                     self.max_bytes)):
            raise ValueError("chunk limits must be positive")

    def tighter(self, other: ChunkLimits) -> ChunkLimits:
        """Each limit at the smaller of the two (a limit only one side sets is kept)."""
        return ChunkLimits(max_datums=min(self.max_datums, other.max_datums),
                           max_numbers=_smaller(self.max_numbers, other.max_numbers),
                           max_bytes=_smaller(self.max_bytes, other.max_bytes))


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def estimate_size(datum: Datum) -> int:
    """The 0.6.3 estimate: tokens, image bytes, pointer location lengths, and every loss-input number (a sparse
    tensor goes dense on 0.6.3: all of its entries)."""
    size = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            size += chunk.length
        elif isinstance(chunk, ImageChunk):
            size += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            size += len(chunk.location)
    return size + sum(math.prod(tensor.shape or ()) if tensor.is_sparse else tensor.size
                      for tensor in datum.loss_fn_inputs.values())


_BYTES_PER_TOKEN = 4  # 0.38 packs token ids as int32
_BYTES_PER_VALUE = {"float32": 4, "int64": 8}
_BYTES_PER_INDEX = 8


def estimate_bytes(datum: Datum) -> int:
    """The 0.38 estimate: the bytes of the datum's payloads in the protobuf request, before compression."""
    size = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, EncodedTextChunk):
            size += _BYTES_PER_TOKEN * chunk.length
        elif isinstance(chunk, ImageChunk):
            size += len(chunk.data)
        elif isinstance(chunk, ImageAssetPointerChunk):
            size += len(chunk.location)
    for tensor in datum.loss_fn_inputs.values():
        size += _BYTES_PER_VALUE.get(tensor.dtype, 8) * tensor.size
        csr = tensor.csr_arrays() if tensor.is_sparse else None  # is_sparse: one look, where csr_arrays makes arrays
        if csr is not None:  # a sparse tensor's row pointers and columns go as int64
            size += _BYTES_PER_INDEX * (csr[1].size + csr[2].size)
    return size


def split_batch(data: Sequence[Datum], limits: ChunkLimits = ChunkLimits()) -> list[list[Datum]]:
    chunks: list[list[Datum]] = []
    current: list[Datum] = []
    numbers = size = 0
    max_numbers, max_bytes = limits.max_numbers, limits.max_bytes
    for datum in data:
        datum_numbers = estimate_size(datum) if max_numbers is not None else 0
        datum_bytes = estimate_bytes(datum) if max_bytes is not None else 0
        if current and (len(current) >= limits.max_datums
                        or (max_numbers is not None and numbers + datum_numbers > max_numbers)
                        or (max_bytes is not None and size + datum_bytes > max_bytes)):
            chunks.append(current)
            current, numbers, size = [], 0, 0
        current.append(datum)
        numbers += datum_numbers
        size += datum_bytes
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
    metrics = reduce_metrics([output.metrics for output in outputs], weights)
    # Constructed, not validated: the parts are outputs already (validated or read by a codec), and validating
    # them again checks every tensor of the batch once more (about 6 ms for 256 x 2048, after the last answer).
    return ForwardBackwardOutput.model_construct(
        loss_fn_output_type=outputs[0].loss_fn_output_type,
        loss_fn_outputs=[entry for output in outputs for entry in output.loss_fn_outputs],
        metrics={name: float(value) for name, value in metrics.items()},
    )
