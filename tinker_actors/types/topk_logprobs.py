"""Top-k logprobs as two dense matrices (protocol 0.38's form), and the list form they convert to.

``TopkLogprobs.token_ids`` (int32) and ``.logprobs`` (float32) have shape ``(positions, k)``; a slot with no
token holds token 0 with logprob :data:`MASK_LOGPROB`. As a list, each position is its ``(token_id, logprob)``
pairs without the empty slots at the end, or ``None`` when the whole row is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MASK_LOGPROB", "TopkLogprobs", "topk_from_lists", "topk_to_lists"]

MASK_LOGPROB = -99999.0
"""The logprob of an empty slot (with token id 0)."""


@dataclass(frozen=True, slots=True)
class TopkLogprobs:
    """The ``k`` most likely tokens at each position: two ``(positions, k)`` matrices."""

    token_ids: npt.NDArray[Any]
    """int32 token ids."""
    logprobs: npt.NDArray[Any]
    """float32 logprobs of those tokens."""


def _empty(token_id: int, logprob: float) -> bool:
    return token_id == 0 and logprob == MASK_LOGPROB


def topk_to_lists(topk: TopkLogprobs) -> list[list[tuple[int, float]] | None]:
    """The list form: per position its pairs (trailing empty slots dropped), or None for an empty row."""
    positions, k = topk.token_ids.shape
    if positions == 0 or k == 0:
        return []
    ids: list[list[int]] = topk.token_ids.tolist()
    logprobs: list[list[float]] = topk.logprobs.tolist()
    rows: list[list[tuple[int, float]] | None] = []
    for row_ids, row_logprobs in zip(ids, logprobs, strict=True):
        if _empty(row_ids[0], row_logprobs[0]):
            rows.append(None)
            continue
        end = k
        while end > 0 and _empty(row_ids[end - 1], row_logprobs[end - 1]):
            end -= 1
        rows.append(list(zip(row_ids[:end], row_logprobs[:end], strict=True)))
    return rows


def topk_from_lists(rows: Sequence[Sequence[tuple[int, float]] | None]) -> TopkLogprobs:
    """The matrix form of the list form (``k`` is the longest row; shorter and None rows are padded)."""
    k = max((len(row) for row in rows if row is not None), default=0)
    token_ids = np.zeros((len(rows), k), dtype=np.int32)
    logprobs = np.full((len(rows), k), MASK_LOGPROB, dtype=np.float32)
    for position, row in enumerate(rows):
        for slot, (token_id, logprob) in enumerate(row or ()):
            token_ids[position, slot] = token_id
            logprobs[position, slot] = logprob
    return TopkLogprobs(token_ids=token_ids, logprobs=logprobs)
