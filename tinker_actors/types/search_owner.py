"""Whose sessions a search covers (protocol 0.38): the official SDK's three owner types.

Each is a :class:`~tinker_actors.types.sessions.SessionSearchOwner` with its ``type`` fixed, so it goes
wherever that does (``SessionSearchRequest(owner=AccessibleSearchOwner())``); its ``type`` is always sent,
by every protocol's rule of which fields are sent. ``SearchOwner`` is their common type.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import Field, model_validator

from tinker_actors.types.sessions import SessionSearchOwner

__all__ = ["AccessibleSearchOwner", "OwnSearchOwner", "SearchOwner", "UserSearchOwner"]

SearchOwner: TypeAlias = SessionSearchOwner


def with_type(data: Any, kind: str) -> Any:
    """``data`` with its ``type`` given explicitly, so that it counts as set (and is sent)."""
    if isinstance(data, dict) and "type" not in data:
        return {**data, "type": kind}
    return data


class OwnSearchOwner(SessionSearchOwner):
    """The caller's own sessions (the default)."""

    type: Literal["own"] = "own"
    owner_urns: None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "own")


class AccessibleSearchOwner(SessionSearchOwner):
    """Every session the caller may see."""

    type: Literal["accessible"] = "accessible"
    owner_urns: None = None

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "accessible")


class UserSearchOwner(SessionSearchOwner):
    """The sessions of the listed users (1 to 10 owner URNs)."""

    type: Literal["user"] = "user"
    owner_urns: list[str] = Field(min_length=1, max_length=10)

    @model_validator(mode="before")
    @classmethod
    def _type_is_set(cls, data: Any) -> Any:
        return with_type(data, "user")
