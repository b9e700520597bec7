"""How much work and disk one request may cause in the local service.

A request beyond a limit is refused before anything is queued: HTTP 400 with
``{"error": <which limit, the value, the maximum>, "category": "user"}``. The defaults accept
everything the official SDKs send (0.6.3 splits forward_backward into chunks of at most 128 datums,
0.38 into chunks of at most 1024 datums and ~5 MB; telemetry comes in batches of at most 100 events)
while keeping a single request from exhausting memory, CPU or disk. Limits that follow from the base
model (token ids below its vocabulary size, ``max_tokens`` and prompt length within its context
window) need no setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_TOKEN_ID", "OverLimitError", "WorkLimits", "check_at_most", "check_token_ids"]

# Token ids travel as int32 in today's protobuf encodings; no vocabulary is larger.
MAX_TOKEN_ID = 2**31 - 1


class OverLimitError(ValueError):
    """A request exceeds a limit (the service answers 400, category ``user``)."""


@dataclass(frozen=True)
class WorkLimits:
    """The limits (all positive integers; see docs/local-service.md, "Limits of work and disk").

    ``max_seq_id_ahead`` bounds how far ahead of the next operation a model will run a ``seq_id``
    may be; ``archive_budget_bytes`` is the disk that cached checkpoint archives may take together.
    """

    max_num_samples: int = 128
    max_topk_prompt_logprobs: int = 64
    max_stop_sequences: int = 64
    max_batch_datums: int = 4096
    max_batch_tokens: int = 1_048_576
    max_seq_id_ahead: int = 4096
    max_ttl_seconds: int = 10 * 365 * 24 * 3600
    max_telemetry_batch_bytes: int = 4 * 1024 * 1024
    max_telemetry_events: int = 1000
    max_telemetry_event_bytes: int = 256 * 1024
    archive_budget_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WorkLimits.{item.name} must be a positive integer, got {value!r}")


def check_at_most(what: str, value: int, limit: int) -> None:
    """``value`` (a count or size named ``what``) must not exceed ``limit``."""
    if value > limit:
        raise OverLimitError(f"{what} is {value}, more than the maximum of {limit}")


def check_token_ids(tokens: Sequence[int] | Sequence[float] | npt.NDArray[Any], vocab_size: int, what: str) -> None:
    """Every id in ``tokens`` must lie in ``[0, vocab_size)`` (min/max run in C: cheap for long lists and arrays)."""
    if len(tokens) == 0:
        return
    if isinstance(tokens, np.ndarray):
        low, high = tokens.min().item(), tokens.max().item()
    else:
        low, high = min(tokens), max(tokens)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise OverLimitError(f"{what} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
