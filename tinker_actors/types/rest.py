"""REST objects: training runs, checkpoint lists, sessions, samplers (WIRE-PROTOCOL §2.2)."""

from __future__ import annotations

from datetime import datetime

from tinker_actors.types._base import ResponseModel
from tinker_actors.types.checkpoints import Checkpoint

__all__ = [
    "CheckpointsListResponse",
    "Cursor",
    "GetSamplerResponse",
    "GetSessionResponse",
    "ListSessionsResponse",
    "TrainingRun",
    "TrainingRunsResponse",
]


class Cursor(ResponseModel):
    offset: int
    limit: int
    total_count: int


class TrainingRun(ResponseModel):
    training_run_id: str
    base_model: str
    model_owner: str
    is_lora: bool
    corrupted: bool = False
    lora_rank: int | None = None
    last_request_time: datetime
    last_checkpoint: Checkpoint | None = None
    last_sampler_checkpoint: Checkpoint | None = None
    user_metadata: dict[str, str] | None = None


class TrainingRunsResponse(ResponseModel):
    training_runs: list[TrainingRun]
    cursor: Cursor


class CheckpointsListResponse(ResponseModel):
    checkpoints: list[Checkpoint]
    cursor: Cursor | None = None


class ListSessionsResponse(ResponseModel):
    sessions: list[str]


class GetSessionResponse(ResponseModel):
    training_run_ids: list[str]
    sampler_ids: list[str]
    display_name: str | None = None
    """Protocol 0.38: the session's display name, if it has one."""
    user_metadata: dict[str, str] | None = None
    """Protocol 0.38: the metadata the session was created with."""


class GetSamplerResponse(ResponseModel):
    sampler_id: str
    base_model: str
    model_path: str | None = None
