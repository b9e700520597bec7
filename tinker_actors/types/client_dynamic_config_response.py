"""``ClientDynamicConfigResponse`` (protocol 0.38): the flags ``client/dynamic_config`` answers, refreshed every
``refresh_interval_sec`` while a client lives (unknown flags ignored)."""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel

__all__ = ["ClientDynamicConfigResponse"]


class ClientDynamicConfigResponse(ResponseModel):
    refresh_interval_sec: int = 300
    sample_cancel_enabled: bool = False
    """Tell the server (``cancel_future``) about a sample nobody waits for anymore."""
    sample_cancel_max_batch_size: int = 64
    """Cancellations sent in parallel, at most."""
