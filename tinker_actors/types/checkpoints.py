"""Checkpoints: save/load requests, REST checkpoint objects and ``tinker://`` paths (§2.1, §2.2, §3.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from tinker_actors.console import HOSTED_CONSOLE, Console
from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestModel, ResponseModel
from tinker_actors.types.optimizer import AdamOptimizerConfig, OptimizerConfig
from tinker_actors.types.sampling_client_kind import SamplingClientKind

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

CheckpointType = Literal["training", "sampler", "external"]
"""``external``: weights exported for use outside Tinker (protocol 0.38, ``tinker://<run>/external_weights/<name>``)."""
TINKER_SCHEME = "tinker://"
_KIND_TO_TYPE: dict[str, CheckpointType] = {"weights": "training", "sampler_weights": "sampler",
                                            "external_weights": "external"}


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
    # Protocol 0.38 (sent only when set by protocol 0.6.3, which has none of them):
    ttl_seconds: int | None = None
    """Seconds the checkpoint lives, 1 hour (3600) to 10 years; None: it never expires."""
    overwrite: bool = False
    """Replace a checkpoint of the same name."""
    user_metadata: dict[str, str] | None = None
    """Kept with the checkpoint (``Checkpoint.user_metadata``)."""
    type: Literal["save_weights"] = "save_weights"


class _LinksToTheConsole(ResponseModel):
    """A saved checkpoint's links into the web console of the service that saved it: a client reads the answer with
    ``model_validate(..., context={"console": console_for(config)})``; one built otherwise links into the hosted
    console, as the official SDK's do (tinker_actors.console)."""

    path: str
    _console: Console = PrivateAttr(default=HOSTED_CONSOLE)

    @model_validator(mode="after")
    def _console_of_the_reader(self, info: ValidationInfo) -> Self:
        console = info.context.get("console") if isinstance(info.context, dict) else None
        if isinstance(console, Console):
            self._console = console
        return self

    def get_console_url(self) -> str:
        """This checkpoint's page in the web console (``NoConsoleError``: the service has none, as the local
        service)."""
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(self.path)
        return self._console.checkpoint(parsed.training_run_id, parsed.checkpoint_id)


class SaveWeightsResponse(_LinksToTheConsole):
    path: str
    type: Literal["save_weights"] | None = None


class SaveWeightsForSamplerRequest(RequestModel):
    """Named (``path``) or ephemeral (``sampling_session_seq_id``, no path) sampler weights."""

    model_id: str
    path: str | None = None
    sampling_session_seq_id: int | None = None
    kind: SamplingClientKind = "snapshot"
    """Protocol 0.38: ``inflight`` weights (shared by the model's inflight samplers) are not supported yet."""
    seq_id: int | None = None
    ttl_seconds: int | None = None
    """Protocol 0.38: seconds the checkpoint lives (as ``SaveWeightsRequest.ttl_seconds``)."""
    user_metadata: dict[str, str] | None = None
    """Protocol 0.38: kept with the checkpoint."""
    type: Literal["save_weights_for_sampler"] = "save_weights_for_sampler"


class SaveWeightsForSamplerResponse(_LinksToTheConsole):
    path: str
    type: Literal["save_weights_for_sampler"] | None = None

    def get_playground_url(self) -> str:
        """The web console's playground with these sampler weights loaded (``NoConsoleError``: no console)."""
        return self._console.playground(self.path)


class SaveWeightsForSamplerResponseInternal(ResponseModel):
    """What the future really returns: ``path`` for a named save, ``sampling_session_id`` for an ephemeral one."""

    path: str | None = None
    sampling_session_id: str | None = None
    type: Literal["save_weights_for_sampler"] | None = None


class LoadWeightsRequest(RequestModel):
    """A load into an existing model (``model_id``, with its ``seq_id``), or protocol 0.38's load that creates
    its model (``session_id`` and ``model_seq_id`` instead of ``model_id``; ``base_model`` overrides the
    checkpoint's, which it must fit; ``optimizer_config`` for a weights-only load). ``weights_access_token``:
    another account's credential, to load a checkpoint that account may read."""

    model_id: str | None = None
    path: str
    optimizer: bool
    seq_id: int | None = None
    session_id: str | None = None
    model_seq_id: int | None = None
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    optimizer_config: OptimizerConfig | None = None
    weights_access_token: str | None = Field(default=None, repr=False)
    """A credential: never shown in a repr."""
    type: Literal["load_weights"] = "load_weights"


class LoadWeightsResponse(ResponseModel):
    path: str | None = None
    model_id: str | None = None
    """Protocol 0.38: the model the load created or loaded into."""
    type: Literal["load_weights"] | None = None


class WeightsInfoRequest(RequestModel):
    tinker_path: str


class WeightsInfoResponse(ResponseModel):
    base_model: str
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """Protocol 0.38: the optimizer family the weights were trained with (Adam when the server does not say)."""
    is_lora: bool
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None


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
                f"Invalid tinker path: {tinker_path!r} "
                f"(expected tinker://<run_id>/<weights|sampler_weights|external_weights>/<name>)")
        run_id, kind, name = parts
        checkpoint_type = _KIND_TO_TYPE.get(kind)
        if checkpoint_type is None:
            raise InvalidInputError(
                f"Invalid tinker path: {tinker_path!r} "
                f"(kind {kind!r} is not 'weights', 'sampler_weights' or 'external_weights')")
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
