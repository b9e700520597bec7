"""Completions reported by ``POST retrieve_futures`` (protocol 0.38): which of a sampling session's requests
finished or failed since the last poll. Batched polling is not built yet here; the types are."""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import Field

from tinker_actors.types._base import ResponseModel

__all__ = ["FutureCompletion", "FutureFailed", "FutureFinished"]


class FutureFinished(ResponseModel):
    state: Literal["finished"] = "finished"
    request_id: str
    response_payload_uncompressed_size: int | None = None
    """The result's size, so that room can be reserved before it is fetched."""


class FutureFailed(ResponseModel):
    state: Literal["failed"] = "failed"
    request_id: str


FutureCompletion: TypeAlias = Annotated[FutureFinished | FutureFailed, Field(discriminator="state")]
