"""``ClientConfigRequest`` (protocol 0.38): the body of ``POST client/config``, sent once per client."""

from __future__ import annotations

from tinker_actors.types._base import RequestModel

__all__ = ["ClientConfigRequest"]


class ClientConfigRequest(RequestModel):
    sdk_version: str
    """The SDK version the server resolves its flags for."""
