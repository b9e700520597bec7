"""Reading JSON request bodies of both protocols: 0.6.3's (only the fields that were set) and 0.38's
(defaults included, ``None`` dropped, and fields the domain request types do not have).

The domain types (``tinker_actors.types``) refuse unknown fields, so a body is split in two: the
fields of the domain type, validated by it, and the fields newer SDKs added, validated by a small
model of their own (an unknown field is still a 400). What the service does with each added field
is the endpoint's business: honour it (``ttl_seconds``), accept it when it asks for nothing the
service lacks (``optimizer_config: adamw``), or refuse it with a 400 that names it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import ConfigDict, Field

from tinker_actors.local.engine.state import PARSE_INLINE_BYTES, ApiError, Call, validation_message

__all__ = [
    "AddedFields",
    "CreateModelAdded",
    "CreateSessionAdded",
    "CreateViaLoadRequest",
    "LoadWeightsAdded",
    "OptimStepAdded",
    "RetrieveAdded",
    "SampleAdded",
    "SaveWeightsAdded",
    "SaveWeightsForSamplerAdded",
    "adamw_only",
    "read_body",
    "read_body_async",
]

M = TypeVar("M", bound=pydantic.BaseModel)
A = TypeVar("A", bound="AddedFields")


class AddedFields(pydantic.BaseModel):
    """The fields a newer SDK sends on one request, with the value that asks for nothing new."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CreateSessionAdded(AddedFields):
    project_id: str | None = None
    display_name: str | None = None


class CreateModelAdded(AddedFields):
    optimizer_config: dict[str, Any] | None = None


class OptimStepAdded(AddedFields):
    optimizer_params: dict[str, Any] | None = None  # a non-Adam optimizer's step settings


class SaveWeightsAdded(AddedFields):
    overwrite: bool = False
    ttl_seconds: int | None = None
    user_metadata: dict[str, str] | None = None


class SaveWeightsForSamplerAdded(AddedFields):
    kind: Literal["snapshot", "inflight"] = "snapshot"
    ttl_seconds: int | None = None
    user_metadata: dict[str, str] | None = None


class LoadWeightsAdded(AddedFields):
    """0.38's create-via-load: a load that creates its model (``session_id`` + ``model_seq_id``, no ``model_id``)."""

    session_id: str | None = None
    model_seq_id: int | None = None
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    optimizer_config: dict[str, Any] | None = None
    weights_access_token: str | None = Field(default=None, repr=False)


class CreateViaLoadRequest(pydantic.BaseModel):
    """0.38's load that creates its model: the whole body (no domain type has this shape)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_id: str
    model_seq_id: int
    path: str
    optimizer: bool
    base_model: str | None = None
    user_metadata: dict[str, Any] | None = None
    optimizer_config: dict[str, Any] | None = None
    weights_access_token: str | None = Field(default=None, repr=False)  # another account's credential
    model_id: None = None
    seq_id: int | None = None
    type: Literal["load_weights"] = "load_weights"


class SampleAdded(AddedFields):
    topk_sample_logprobs: int = 0
    target_prompt_logprobs: dict[str, Any] | None = None
    prompt_alt_tokens_k: int = 0
    prompt_logprobs_last_n: int | None = None
    record_stability_info: bool | None = None


class RetrieveAdded(AddedFields):
    allow_metadata_only: bool = False


def adamw_only(config: dict[str, Any] | None, endpoint: str) -> None:
    """A 400 unless ``config`` (an ``optimizer_config``) is absent or AdamW, the one optimizer served here."""
    if config is None:
        return
    kind = config.get("type", "adamw")
    if kind != "adamw" or set(config) - {"type"}:
        raise ApiError(400, f"{endpoint}: the local service trains with AdamW only (torch.optim.AdamW's update, "
                            f"with the step's weight_decay and grad_clip_norm), not optimizer_config {config!r}: "
                            "the local model computes only what it can reproduce faithfully")


def read_body(call: Call, model: type[M], added: type[A], *, none_dropped: tuple[str, ...] = ()) -> tuple[M, A]:
    """The body as ``model`` plus the ``added`` fields; a 400 naming the fields that do not fit.

    ``none_dropped``: fields ``model`` requires that 0.38 leaves out when they are ``None``.
    """
    data = call.json()
    if not isinstance(data, dict):
        return call.parse(model), added()  # the domain type's own message for a non-object
    # An added field goes to ``added`` even once the domain type holds it too (the types carry every 0.38
    # field; what the service does with one is decided from ``added``).
    own = {name: value for name, value in data.items()
           if name in model.model_fields and name not in added.model_fields}
    rest = {name: value for name, value in data.items() if name not in own}
    for name in none_dropped:
        own.setdefault(name, None)
    try:
        extra = added.model_validate(rest)
    except pydantic.ValidationError as error:
        raise ApiError(400, validation_message(call.endpoint, error)) from error
    try:
        return model.model_validate(own), extra
    except pydantic.ValidationError as error:
        raise ApiError(400, validation_message(call.endpoint, error)) from error


async def read_body_async(call: Call, model: type[M], added: type[A]) -> tuple[M, A]:
    """:func:`read_body` on a worker thread for big bodies (megabytes of tokens)."""
    if len(call.request.body) < PARSE_INLINE_BYTES:
        return read_body(call, model, added)
    return await asyncio.to_thread(read_body, call, model, added)
