"""``create_training_client_from_state``: a new model holding a checkpoint's weights.

Protocol 0.38 makes it one ``/api/v1/load_weights`` call that creates the model (``session_id`` and
``model_seq_id`` instead of a ``model_id``; the server takes the LoRA settings from the checkpoint): the
checkpoint's base model may be overridden by a compatible one (``base_model``), another account's
checkpoint is read with that account's ``weights_access_token``, and a weights-only load may choose the new
model's optimizer. Protocol 0.6.3 has no such load: the client asks ``weights_info``, creates a model of that
shape and loads into it (three calls), and the 0.38-only settings are refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tinker_actors.clients.checkpoint_options import check_user_metadata
from tinker_actors.clients.context import ClientContext
from tinker_actors.errors import InvalidInputError
from tinker_actors.futures import poll_future
from tinker_actors.http import Purpose
from tinker_actors.types import (
    LoadWeightsRequest,
    LoadWeightsResponse,
    OptimizerConfig,
    ParsedCheckpointTinkerPath,
    UntypedAPIFuture,
)

__all__ = ["FromState", "check_request", "from_state_settings", "load_creating_model"]


@dataclass(frozen=True)
class FromState:
    """What a ``from_state`` call asks for, checked."""

    path: str
    optimizer: bool  # the checkpoint's optimizer state too (``..._with_optimizer``)
    base_model: str | None = None
    user_metadata: dict[str, str] | None = None
    weights_access_token: str | None = field(default=None, repr=False)  # a credential: never shown
    optimizer_config: OptimizerConfig | None = None

    @property
    def needs_038(self) -> list[str]:
        """The settings only protocol 0.38's one-call load carries."""
        return [name for name, value in (("base_model", self.base_model),
                                         ("weights_access_token", self.weights_access_token)) if value is not None]


def from_state_settings(method: str, path: str, base_model: object, user_metadata: object,
                        weights_access_token: object, optimizer_config: OptimizerConfig | None, *,
                        optimizer: bool) -> FromState:
    """The checked settings; :class:`InvalidInputError` for a malformed one. A dict given as the second
    positional argument is 0.6.3's ``user_metadata`` (0.38 put ``base_model`` there)."""
    ParsedCheckpointTinkerPath.from_tinker_path(path)
    if isinstance(base_model, Mapping):
        if user_metadata is not None:
            raise InvalidInputError(f"{method}: base_model must be a model name, got a dict (and user_metadata too)")
        base_model, user_metadata = None, base_model
    if base_model is not None and (not isinstance(base_model, str) or not base_model):
        raise InvalidInputError(f"{method}: base_model must be a non-empty model name, got {base_model!r}")
    if weights_access_token is not None and (not isinstance(weights_access_token, str) or not weights_access_token):
        raise InvalidInputError(f"{method}: weights_access_token must be a non-empty str")  # its value never shown
    return FromState(path=path, optimizer=optimizer, base_model=base_model,
                     user_metadata=check_user_metadata(method, user_metadata),
                     weights_access_token=weights_access_token, optimizer_config=optimizer_config)


def _request(settings: FromState, session_id: str, model_seq_id: int) -> LoadWeightsRequest:
    fields: dict[str, Any] = {"base_model": settings.base_model, "user_metadata": settings.user_metadata,
                              "weights_access_token": settings.weights_access_token}
    # AdamW is the default: left unset then, as create_lora_training_client leaves it.
    config = settings.optimizer_config
    kind = config.get("type") if isinstance(config, dict) else getattr(config, "type", None)
    if config is not None and kind != "adamw":
        fields["optimizer_config"] = config
    try:
        return LoadWeightsRequest(session_id=session_id, model_seq_id=model_seq_id, path=settings.path,
                                  optimizer=settings.optimizer,
                                  **{name: value for name, value in fields.items() if value is not None})
    except InvalidInputError:
        raise  # typed already (UnsupportedFeatureError for an optimizer not built)
    except ValueError as invalid:
        raise InvalidInputError(f"invalid create_training_client_from_state arguments: {invalid}") from None


def check_request(settings: FromState) -> None:
    """Build the request once with placeholders, so a setting the types refuse raises on the caller's thread."""
    _request(settings, "pending", 0)


async def load_creating_model(context: ClientContext, settings: FromState, session_id: str,
                              model_seq_id: int) -> str:
    """In the IoLoop, protocol 0.38: the one load that creates model ``<session>:train:<model_seq_id>`` from the
    checkpoint; returns the new model's id once the load is done (a refusal raises, typed)."""
    codec = context.profile.codec
    request = _request(settings, session_id, model_seq_id)
    submitted = await context.http.request(Purpose.TRAINING, "POST", "/api/v1/load_weights",
                                           content=codec.encode_json(request), response_model=UntypedAPIFuture,
                                           endpoint="load_weights")
    loaded = await poll_future(context.http, submitted.data.request_id, "LoadWeights",
                               LoadWeightsResponse.model_validate, settings=context.poll, codec=codec,
                               response_budget=context.response_budget)
    return loaded.model_id or submitted.data.model_id or f"{session_id}:train:{model_seq_id}"
