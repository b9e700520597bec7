"""Settings of the local service (all have defaults that suit a developer's machine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

__all__ = ["DEFAULT_MAX_BODY_BYTES", "LocalServiceConfig"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LocalServiceConfig:
    """How a :class:`~tinker_actors.local.service.LocalService` behaves.

    ``api_key`` None accepts any non-empty ``X-API-Key``; a value requires exactly that key.
    ``long_poll_s`` is how long ``retrieve_future`` holds a pending poll (keep it below the client's
    read timeout, 45 s for the official SDK). ``gap_timeout_s`` is how long a model waits for a
    missing ``seq_id`` before it moves on.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    api_key: SecretStr | None = field(default=None, repr=False)
    zero_work: bool = False
    long_poll_s: float = 30.0
    session_timeout_s: float = 300.0
    result_ttl_s: float = 3600.0
    gap_timeout_s: float = 5.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    workers: int = 2
    max_pending_samples: int | None = None
    archive_lifetime_s: float = 900.0
    fault_seed: int = 0
