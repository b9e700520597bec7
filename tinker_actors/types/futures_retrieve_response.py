"""``FuturesRetrieveResponse`` (protocol 0.38): the completions since the cursor, and the next cursor."""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel
from tinker_actors.types.future_completion import FutureCompletion

__all__ = ["FuturesRetrieveResponse"]


class FuturesRetrieveResponse(ResponseModel):
    completions: list[FutureCompletion]
    cursor: int
    """Pass it back as ``prev_cursor``."""
