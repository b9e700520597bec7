"""Billing reads (protocol 0.38): hourly usage events and the current checkpoint storage.

``GET /api/v1/billing/usage/events`` and ``GET /api/v1/billing/usage/checkpoints/current``, with the field
names of the official SDK 0.38 (``tinker.types.billing_usage_response``,
``current_checkpoint_storage_usage_response``): ``RestClient.get_billing_usage`` and
``RestClient.get_current_checkpoint_storage_usage``, ``tinker-actors billing usage | checkpoint-storage``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = [
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageResponse",
    "BillingUsageSession",
    "CheckpointBillingEvent",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "StorageBillingEvent",
    "TrainingBillingEvent",
]


class GetBillingUsageRequest(RequestModel):
    """The query of a usage read: a window of whole UTC hours, at most 14 days long (the server checks)."""

    starting_on: datetime
    """Inclusive start (a datetime, or an RFC 3339 string)."""
    ending_before: datetime
    """Exclusive end."""


class GetCurrentCheckpointStorageUsageRequest(RequestModel):
    project_id: str | None = None
    """Only this project's checkpoints; None: the whole account."""


class TrainingBillingEvent(ResponseModel):
    type: Literal["training"] = "training"
    token_count: int


class SamplingPrefillBillingEvent(ResponseModel):
    type: Literal["sampling_prefill"] = "sampling_prefill"
    cached: bool
    token_count: int


class SamplingSampleBillingEvent(ResponseModel):
    type: Literal["sampling_sample"] = "sampling_sample"
    token_count: int


class CheckpointBillingEvent(ResponseModel):
    type: Literal["checkpoint"] = "checkpoint"
    count: int


class StorageBillingEvent(ResponseModel):
    type: Literal["storage"] = "storage"
    free: bool = False
    gigabyte_hours: float


BillingEventInfo = Annotated[
    TrainingBillingEvent | SamplingPrefillBillingEvent | SamplingSampleBillingEvent | CheckpointBillingEvent
    | StorageBillingEvent,
    Field(discriminator="type"),
]
"""What one usage bucket counted; dispatch on ``.type``."""


class BillingUsageEvent(ResponseModel):
    """One hourly bucket of one kind of usage, with what it is attributed to."""

    bucket_start: datetime
    bucket_end: datetime
    base_model: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    session_id: str | None = None
    project_id: str | None = None
    estimated_cost_usd: float | None = None
    effective_rate_usd_per_million_tokens: float | None = None
    effective_rate_usd_per_gigabyte_month: float | None = None
    event_info: BillingEventInfo


class BillingUsageSession(ResponseModel):
    user_metadata: dict[str, str] | None = None


class BillingUsageResponse(ResponseModel):
    data: list[BillingUsageEvent]
    sessions: dict[str, BillingUsageSession] = Field(default_factory=dict)
    """``session_id`` -> that session's attributes, for every session named in ``data``."""
    cost_data_through: datetime | None = None


class CurrentCheckpointStorageUsageItem(ResponseModel):
    """The active checkpoints of one project and session owner."""

    project_id: str | None = None
    org_user_urn: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    checkpoint_count: int
    size_bytes: int
    size_gigabytes: float
    estimated_monthly_cost_usd: float | None = None


class CurrentCheckpointStorageUsageResponse(ResponseModel):
    effective_rate_usd_per_gigabyte_month: float | None = None
    data: list[CurrentCheckpointStorageUsageItem]
