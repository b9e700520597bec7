"""The JSON request bodies of protocol 0.38: defaults included, ``None`` dropped, new fields at their defaults.

Since 0.25 the official SDK serializes every JSON request with its defaults (so the ``type``
discriminators and default values go on the wire) and without the fields that are ``None``
(WIRE-PROTOCOL §6.3). Its request types also gained fields that the domain model does not have yet;
those go out at the value the official SDK sends when the caller did not set them (e.g. a
``save_weights`` carries ``"overwrite": false``), so that a 0.38 server reads the same body from us as
from the official SDK. A field the domain model already holds is never overridden.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from tinker_actors.types import (
    CreateModelRequest,
    FutureRetrieveRequest,
    SampleRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SetCheckpointTtlRequest,
)

__all__ = ["ADDED_FIELDS", "encode_json", "encode_retrieve"]

ADDED_FIELDS: dict[type[pydantic.BaseModel], dict[str, Any]] = {
    CreateModelRequest: {"optimizer_config": {"type": "adamw"}},
    SaveWeightsRequest: {"overwrite": False},
    SaveWeightsForSamplerRequest: {"kind": "snapshot"},
    SampleRequest: {"topk_sample_logprobs": 0, "prompt_alt_tokens_k": 0, "record_stability_info": False},
    FutureRetrieveRequest: {"allow_metadata_only": False},
}
"""Fields the 0.38 request types have and ours do not, with the value the official SDK sends by default."""



def _added_text(model: type[pydantic.BaseModel], fields: dict[str, Any]) -> bytes:
    """The JSON text spliced in before the closing brace: only fields the domain type does not hold (once
    it holds one, its own value is sent)."""
    missing = {name: value for name, value in fields.items() if name not in model.model_fields}
    return json.dumps(missing, separators=(",", ":")).encode()[1:-1]


_ADDED_TEXT: dict[type[pydantic.BaseModel], bytes] = {
    model: text for model, fields in ADDED_FIELDS.items() if (text := _added_text(model, fields))
}

_HELD_NONE_DEFAULTS: dict[type[pydantic.BaseModel], dict[str, Any]] = {
    model: held for model, fields in ADDED_FIELDS.items()
    if (held := {name: value for name, value in fields.items()
                 if name in model.model_fields and model.model_fields[name].default is None})
}
"""Added fields the domain type holds with ``None`` as its default where the official client sends a value
(``record_stability_info``: the official type defaults to None, its SamplingClient sends false): when the
request leaves them at None, the official client's value is sent."""


def _added(request: pydantic.BaseModel) -> bytes | None:
    static = _ADDED_TEXT.get(type(request))
    held = _HELD_NONE_DEFAULTS.get(type(request))
    if held is None:
        return static
    unset = {name: value for name, value in held.items() if getattr(request, name) is None}
    if not unset:
        return static
    text = json.dumps(unset, separators=(",", ":")).encode()[1:-1]
    return text if static is None else static + b"," + text


NONE_IS_A_VALUE: frozenset[type[pydantic.BaseModel]] = frozenset({SetCheckpointTtlRequest})
"""Requests whose ``None`` means something and is sent as ``null`` (the official SDK builds these bodies by
hand: ``{"ttl_seconds": null}`` removes a checkpoint's expiry)."""


def encode_json(request: pydantic.BaseModel) -> bytes:
    """The 0.38 JSON body of ``request``: compact, declaration order, the added fields last."""
    content: bytes = request.__pydantic_serializer__.to_json(
        request, exclude_none=type(request) not in NONE_IS_A_VALUE)
    added = _added(request)
    if added is None:
        return content
    return content[:-1] + (b"," if len(content) > 2 else b"") + added + b"}"


def encode_retrieve(request_id: str, *, allow_metadata_only: bool) -> bytes:
    """A ``retrieve_future`` body; ``allow_metadata_only`` lets the server answer a finished request's
    size first (``complete_metadata``), so the client can reserve room for a large result."""
    return json.dumps({"request_id": request_id, "allow_metadata_only": allow_metadata_only},
                      separators=(",", ":")).encode()
