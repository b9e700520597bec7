"""Settings of the local service (all have defaults that suit a developer's machine)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.engine.tokens import DEFAULT_TOKEN_LIFETIME_S
from tinker_actors.local.engine.work_limits import WorkLimits
from tinker_actors.local.server.http_server import DEFAULT_LIMITS, HttpLimits

__all__ = ["DEFAULT_MAX_BODY_BYTES", "LocalServiceConfig", "UnsafeBindError", "bind_refusal", "is_loopback_host",
           "remote_bind_warning"]

DEFAULT_MAX_BODY_BYTES = DEFAULT_LIMITS.max_body_bytes


@dataclass(frozen=True)
class LocalServiceConfig:
    """How a :class:`~tinker_actors.local.service.LocalService` behaves.

    ``api_keys`` (user name -> key) empty accepts any non-empty ``X-API-Key`` as user ``"default"``;
    otherwise each key is its user's (``api_key`` is the first of them, or None). A token the service
    issued at ``POST /api/v1/auth/token`` lives ``token_lifetime_s`` (the default; changeable while it runs).
    ``long_poll_s`` is how long ``retrieve_future`` holds a pending poll (keep it below the client's
    read timeout, 45 s for the official SDK). ``gap_timeout_s`` is how long a model waits for a
    missing ``seq_id`` before it moves on.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    api_key: SecretStr | None = field(default=None, repr=False)
    api_keys: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)
    token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S
    zero_work: bool = False
    long_poll_s: float = 30.0
    session_timeout_s: float = 300.0
    result_ttl_s: float = 3600.0
    gap_timeout_s: float = 5.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # HTTP timeouts and limits (what each means: tinker_actors.local.server.http_server.HttpLimits)
    max_header_bytes: int = DEFAULT_LIMITS.max_header_bytes
    header_timeout_s: float = DEFAULT_LIMITS.header_timeout_s
    body_timeout_s: float = DEFAULT_LIMITS.body_timeout_s
    idle_timeout_s: float = DEFAULT_LIMITS.idle_timeout_s
    send_timeout_s: float = DEFAULT_LIMITS.send_timeout_s
    max_connections: int = DEFAULT_LIMITS.max_connections
    allow_remote: bool = False  # serve a non-loopback address although any API key is accepted
    workers: int = 2
    max_pending_samples: int | None = None
    archive_lifetime_s: float = 900.0
    fault_seed: int = 0
    # Work and disk limits per request (tinker_actors.local.engine.work_limits.WorkLimits), and the address
    # put in absolute URLs the service hands out (archive redirects): default http://<host>:<bound port>.
    work_limits: WorkLimits = field(default_factory=WorkLimits)
    public_url: str | None = None

    def http_limits(self) -> HttpLimits:
        """The HTTP server's limits (validated: a non-positive timeout or size is an InvalidInputError)."""
        return HttpLimits(
            max_body_bytes=self.max_body_bytes, max_header_bytes=self.max_header_bytes,
            header_timeout_s=self.header_timeout_s, body_timeout_s=self.body_timeout_s,
            idle_timeout_s=self.idle_timeout_s, send_timeout_s=self.send_timeout_s,
            max_connections=self.max_connections)


class UnsafeBindError(InvalidInputError):
    """A non-loopback address was asked for while any API key is accepted, without ``allow_remote``."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any other name counts as remote."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, *, has_api_key: bool, allow_remote: bool) -> str | None:
    """Why serving on ``host`` is refused, or None when it is allowed.

    A service that accepts any API key lets anyone who can reach it train, sample and delete
    checkpoints, so it stays on loopback unless keys are configured or ``allow_remote`` says so.
    """
    if is_loopback_host(host) or has_api_key or allow_remote:
        return None
    return (f"refusing to serve on {host!r}, a non-loopback address, while any API key is accepted: "
            "configure API keys (api_key= / api_keys= / api_key_file=, --api-key / --api-key-file / "
            "$TINKER_LOCAL_API_KEY), or pass "
            "allow_remote=True / --allow-remote to serve everyone on the network anyway")


def remote_bind_warning(host: str, *, has_api_key: bool) -> str | None:
    """What to warn about when serving a non-loopback address (None on loopback)."""
    if is_loopback_host(host):
        return None
    if has_api_key:
        return (f"the local service listens on {host!r}, a non-loopback address: requests (and the API key) "
                "travel unencrypted (plain HTTP)")
    return (f"WARNING: the local service listens on {host!r}, a non-loopback address, and accepts ANY API "
            "key: anyone who can reach this port can train, sample, read and delete checkpoints")
