"""``CopyWeightsRequest`` (protocol 0.38): copy a checkpoint into a session's run or into a project.

Give ``destination_project_id``, or both ``session_id`` and ``model_seq_id``. Sent by ``RestClient.copy_weights`` /
``ServiceClient.copy_weights`` (with ``weights_access_token`` in a header, not in the body).
"""

from __future__ import annotations

from pydantic import Field

from tinker_actors.types._base import RequestModel

__all__ = ["CopyWeightsRequest"]


class CopyWeightsRequest(RequestModel):
    session_id: str | None = None
    """The session that will own the copy (the copy goes into its project)."""
    model_seq_id: int | None = None
    """The training-run slot within that session, as ``CreateModelRequest`` numbers them."""
    destination_project_id: str | None = None
    """The project that will own the copy when no ``session_id`` is given."""
    source_path: str
    """A ``tinker://`` path of either kind of weights."""
    ttl_seconds: int | None = None
    """Seconds until the copy expires, 1 hour (3600) to 10 years (the source's expiry is not inherited)."""
    weights_access_token: str | None = Field(default=None, repr=False)
    """A credential for weights of another account: never shown in a repr."""
