"""Checkpoints: save/load requests, REST checkpoint objects and ``tinker://`` paths (§2.1, §2.2, §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, ResponseModel

__all__ = [
    "Checkpoint",
    "CheckpointArchiveUrlResponse",
    "CheckpointType",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "ParsedCheckpointTinkerPath",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "SetCheckpointTtlRequest",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
    "validate_checkpoint_name",
]

CheckpointType = Literal["training", "sampler"]
TINKER_SCHEME = "tinker://"
_KIND_TO_TYPE: dict[str, CheckpointType] = {"weights": "training", "sampler_weights": "sampler"}


def validate_checkpoint_name(name: str) -> str:
    """A checkpoint name becomes one path segment: no ``/``, no ``..``, not empty."""
    if not isinstance(name, str):  # the official SDK refuses a Path or a number too (its path field is a str)
        raise InvalidInputError(f"a checkpoint name must be a str (e.g. 'step-0100'), got {type(name).__name__}")
    if not name or "/" in name or ".." in name or name.strip() != name:
        raise InvalidInputError(
            f"invalid checkpoint name {name!r}: use a non-empty name without '/', '..' or surrounding spaces")
    return name


class SaveWeightsRequest(RequestModel):
    model_id: str
    path: str | None = None
    seq_id: int | None = None
    type: Literal["save_weights"] = "save_weights"


class SaveWeightsResponse(ResponseModel):
    path: str
    type: Literal["save_weights"] | None = None


class SaveWeightsForSamplerRequest(RequestModel):
    """Named (``path``) or ephemeral (``sampling_session_seq_id``, no path) sampler weights."""

    model_id: str
    path: str | None = None
    sampling_session_seq_id: int | None = None
    seq_id: int | None = None
    type: Literal["save_weights_for_sampler"] = "save_weights_for_sampler"


class SaveWeightsForSamplerResponse(ResponseModel):
    path: str
    type: Literal["save_weights_for_sampler"] | None = None


class SaveWeightsForSamplerResponseInternal(ResponseModel):
    """What the future really returns: ``path`` for a named save, ``sampling_session_id`` for an ephemeral one."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class LoadWeightsRequest(RequestModel):
    model_id: str
    path: str
    optimizer: bool
    seq_id: int | None = None
    type: Literal["load_weights"] = "load_weights"


class LoadWeightsResponse(ResponseModel):
    path: str | None = None
    type: Literal["load_weights"] | None = None


class WeightsInfoRequest(RequestModel):
    tinker_path: str


class WeightsInfoResponse(ResponseModel):
    base_model: str
    is_lora: bool
    lora_rank: int | None = None


class Checkpoint(ResponseModel):
    checkpoint_id: str
    checkpoint_type: CheckpointType
    time: datetime
    tinker_path: str
    size_bytes: int | None = None
    public: bool = False
    # Newer SDKs: checkpoint time-to-live and metadata.
    expires_at: datetime | None = None
    user_metadata: dict[str, str] | None = None


class CheckpointArchiveUrlResponse(ResponseModel):
    url: str
    expires: datetime


class SetCheckpointTtlRequest(RequestModel):
    """Newer SDKs: ``ttl_seconds`` from now, or ``None`` to keep the checkpoint forever."""

    ttl_seconds: int | None


class ParsedCheckpointTinkerPath(ResponseModel):
    """``tinker://<training_run_id>/<weights|sampler_weights>/<name>``, split into its parts."""

    tinker_path: str
    training_run_id: str
    checkpoint_type: CheckpointType
    checkpoint_id: str

    @classmethod
    def from_tinker_path(cls, tinker_path: str) -> ParsedCheckpointTinkerPath:
        if not isinstance(tinker_path, str) or not tinker_path.startswith(TINKER_SCHEME):
            raise InvalidInputError(f"Invalid tinker path: {tinker_path!r} (it must start with {TINKER_SCHEME})")
        parts = tinker_path[len(TINKER_SCHEME):].split("/")
        if len(parts) != 3 or not all(parts):
            raise InvalidInputError(
                f"Invalid tinker path: {tinker_path!r} (expected tinker://<run_id>/<weights|sampler_weights>/<name>)")
        run_id, kind, name = parts
        checkpoint_type = _KIND_TO_TYPE.get(kind)
        if checkpoint_type is None:
            raise InvalidInputError(
                f"Invalid tinker path: {tinker_path!r} (kind {kind!r} is not 'weights' or 'sampler_weights')")
        if name == ".." or name == ".":
            raise InvalidInputError(f"Invalid tinker path: {tinker_path!r} (bad checkpoint name)")
        return cls(tinker_path=tinker_path, training_run_id=run_id, checkpoint_type=checkpoint_type,
                   checkpoint_id=f"{kind}/{name}")

    @property
    def name(self) -> str:
        return self.checkpoint_id.split("/", 1)[1]

    @property
    def kind(self) -> str:
        return self.checkpoint_id.split("/", 1)[0]
