"""Base classes and the one JSON encoder of the wire types.

Wire rule (WIRE-PROTOCOL §2.0): a request body holds only the fields that were explicitly set; fields
left at their default (including the ``type`` discriminators) are not sent. ``encode_json`` implements
that rule with pydantic-core's Rust serializer, which is what makes big token lists cheap to encode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import ConfigDict

from tinker_actors.types.unsupported import refuse_not_built

__all__ = ["RequestModel", "ResponseModel", "encode_json", "problems_of", "to_wire_dict"]


class RequestModel(pydantic.BaseModel):
    """A type the client sends. Frozen, and unknown fields are an error (a typo is caught early)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    if not TYPE_CHECKING:  # keeps the typed constructor the pydantic mypy plugin writes
        def __init__(self, /, **data: Any) -> None:
            # Settings of newer SDKs that are not built yet are refused here, as given, before validation
            # (types/unsupported.py); reading a body (model_validate) is not a request being built.
            refuse_not_built(type(self).__name__, data)
            super().__init__(**data)

    def __str__(self) -> str:
        return repr(self)


class ResponseModel(pydantic.BaseModel):
    """A type the server sends. Frozen; unknown fields are ignored so newer servers stay readable."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def __str__(self) -> str:
        return repr(self)


def encode_json(model: pydantic.BaseModel) -> bytes:
    """The wire bytes of a model: compact JSON of the fields that were set, in declaration order."""
    return model.__pydantic_serializer__.to_json(model, exclude_unset=True)


def to_wire_dict(model: pydantic.BaseModel) -> dict[str, Any]:
    """The wire JSON of a model as a Python dict (what the server would parse)."""
    return model.model_dump(mode="json", exclude_unset=True)


def problems_of(invalid: pydantic.ValidationError) -> str:
    """A validation error in one line: ``field: message; ...`` (pydantic's ``Value error, `` prefix dropped)."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: "
                     f"{str(error['msg']).removeprefix('Value error, ')}" for error in invalid.errors())
