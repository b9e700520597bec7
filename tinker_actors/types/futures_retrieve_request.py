"""``FuturesRetrieveRequest`` (protocol 0.38): one poll for all of a sampling session's results.

Batched polling (``sample_use_retrieve_futures``) is not built yet here; the types are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tinker_actors.types._base import RequestModel

__all__ = ["FuturesRetrieveRequest", "SamplingSessionFuturesTarget"]


class SamplingSessionFuturesTarget(RequestModel):
    """A sampling session, or one of its clones (``cloned_sampler_id``: ``seq_id // 1_000_000_000``, 0 for
    the original client)."""

    type: Literal["sampling_session"] = "sampling_session"
    sampling_session_id: str
    cloned_sampler_id: int = 0


class FuturesRetrieveRequest(RequestModel):
    target: SamplingSessionFuturesTarget
    prev_cursor: int = 0
    """The previous answer's ``cursor``: what came before it is seen. 0: from the start."""
    timeout: float | None = None
    retrieved_request_ids: list[str] = Field(default_factory=list)
    """Requests whose results were fetched in full: the server may drop them."""
