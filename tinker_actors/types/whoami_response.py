"""``WhoamiResponse`` (protocol 0.38): who the presented credential acts as."""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel

__all__ = ["WhoamiResponse"]


class WhoamiResponse(ResponseModel):
    user_urn: str
    """The calling principal."""
    org_urn: str
    """The organization the credential acts in."""
    email: str | None = None
    """The user's email, when the principal is a user."""
