"""Which wire protocol a ServiceClient speaks, and what the server asked of it (docs/protocols.md).

:func:`negotiate` runs once per ServiceClient, in the IoLoop, before its session is created:

* ``Config.protocol == "0.6.3"``: nothing is asked; the 0.6.3 codec with 0.6.3's fixed limits.
* ``"0.38"``: ``POST client/config`` (a 404 is an error: the server predates 0.38), then
  ``POST client/dynamic_config`` (a 404 there means the defaults, as in the official SDK).
* ``"auto"`` (the default): as ``"0.38"``, except that a 404 on ``client/config`` means a server that
  predates that call: the client speaks 0.6.3, and says so in one info line (``protocol.fallback``).

The answer is a frozen :class:`ProtocolProfile`: the codec, the flags the server returned (unknown ones
ignored, ``{}`` meaning every default) and what they mean for the clients (chunk limits, compression,
sampling concurrency, byte budgets). The clients read it from their shared context and call the codec;
none of them looks at the version. The ``client/dynamic_config`` flags are refreshed by the
ServiceClient's actor on a timer, at the interval the server gives (never more often than
``Config.min_config_refresh_interval``); a failed refresh keeps the last flags.

``pjwt_auth_enabled`` turns on token exchange (:mod:`tinker_actors.auth`, docs/accounts.md), with
``credential_default_source: credential_cmd`` requiring ``TINKER_CREDENTIAL_CMD``.
``sample_join_sampling_session`` makes each SamplingClient clone ask the server for its block of seq ids.
Feature switches of ``client/config`` that turn on features this SDK does not implement
(``sample_use_retrieve_futures``, ``custom_loss_server_side``, ``use_pyqwest_transport``) are permissions
to use another path; the default path they leave in place is the one this SDK takes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import NotFoundError, error_for_status
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.logs import level_enabled
from tinker_actors.training.chunking import ChunkLimits
from tinker_actors.wire import ClientCodec, client_codec

__all__ = [
    "CLIENT_CONFIG_PATH",
    "DYNAMIC_CONFIG_PATH",
    "DynamicFlags",
    "ProtocolProfile",
    "ServerFlags",
    "fetch_dynamic_flags",
    "negotiate",
    "pinned_profile",
]

log = structlog.get_logger("tinker_actors.protocol")

CLIENT_CONFIG_PATH = "/api/v1/client/config"
DYNAMIC_CONFIG_PATH = "/api/v1/client/dynamic_config"

# 0.6.3 had no flags: its chunks held at most 128 datums and 500,000 numbers (WIRE-PROTOCOL §4.4).
LEGACY_CHUNK_LIMITS = ChunkLimits(max_datums=128, max_numbers=500_000)


class ServerFlags(BaseModel):
    """The ``client/config`` flags this SDK obeys, at the official 0.38 defaults. Unknown flags are ignored,
    so ``{}`` means every default; a flag of the wrong type is an ``APIResponseValidationError``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    proto_compress_fwdbwd: bool = False
    fwdbwd_max_chunk_len: int = Field(1024, ge=1)
    fwdbwd_max_chunk_bytes_count: int = Field(5_000_000, ge=1)
    fwdbwd_dispatch_bytes_semaphore_size: int = Field(50_000_000, ge=1)
    parallel_fwdbwd_chunks: bool = True
    sample_max_concurrent_requests: int = Field(2000, ge=1)
    sample_dispatch_bytes_semaphore_size: int = Field(10 * 1024 * 1024, ge=1)
    inflight_response_bytes_semaphore_size: int = Field(50 * 1024 * 1024, ge=1)
    sample_no_retries: bool = False
    sample_enable_stuck_detection: bool = True
    """Samples fail once none of their client finished for ``RetryConfig.progress_timeout`` ("stuck"); false:
    that clock only announces (``RetryConfig.enable_stuck_detection`` is then off whatever the client says)."""
    pjwt_auth_enabled: bool = False
    """Exchange the credential for short-lived tokens (``POST auth/token``) and send those."""
    credential_default_source: str = "api_key"
    """``credential_cmd``: the organisation requires dynamic credentials (``TINKER_CREDENTIAL_CMD``)."""
    billing_exception_max_pause_duration_sec: float = Field(3600.0, gt=0)
    """How long requests answered 402 (billing) pause before they fail (``Config.billing_pause`` may override)."""
    sample_use_retrieve_futures: bool = False
    """Samples learn they finished from one batched poll per sampling session (``retrieve_futures``;
    tinker_actors.clients.batched_polls) instead of one long poll each."""
    sample_join_sampling_session: bool = False
    """A clone of a SamplingClient (unpickled, or from a sampler handle) asks ``join_sampling_session`` for its
    own block of seq ids before its first sample; otherwise it picks a random block (tinker_actors.fanout)."""


class DynamicFlags(BaseModel):
    """The ``client/dynamic_config`` flags (refreshed while the client lives), at the official defaults."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    refresh_interval_sec: float = Field(300.0, gt=0)
    sample_cancel_enabled: bool = False
    sample_cancel_max_batch_size: int = Field(64, ge=1)


@dataclass(frozen=True, slots=True)
class ProtocolProfile:
    """What one ServiceClient speaks, and the limits that follow from the server's flags.

    ``None`` for a budget or a limit means the server set none (0.6.3 has no flags).
    """

    codec: ClientCodec
    sdk_version: str
    how: Literal["pinned", "negotiated", "fallback"]
    """``pinned``: ``Config.protocol`` named the version and nothing was asked (0.6.3);
    ``negotiated``: the server answered ``client/config``; ``fallback``: it answered 404 there."""
    chunk_limits: ChunkLimits
    compress_forward_backward: bool = False
    forward_backward_bytes_in_flight: int | None = None
    max_concurrent_samples: int | None = None
    sample_bytes_in_flight: int | None = None
    response_bytes_in_flight: int | None = None
    sample_retries: bool = True
    sample_stuck_detection: bool = True
    """``sample_enable_stuck_detection``: a sampling client's no-progress clock may fail its samples."""
    info_on_create: bool = False
    """Fetch ``get_info`` right after a training model is created and answer ``TrainingClient.get_info()``
    from it, as the official 0.38 SDK does; otherwise ``get_info`` is asked for on the first call."""
    sends_process_uuid: bool = False
    """Telemetry batches carry the process's ``process_uuid`` (the official 0.38 SDK's do)."""
    sessionless_telemetry: bool = False
    """REST calls made without a session report to ``sessionless-<uuid4>`` telemetry (0.38; 0.6.3 has no such mode)."""
    token_exchange: bool = False
    """Requests send short-lived tokens exchanged for the credential (``pjwt_auth_enabled``; docs/accounts.md)."""
    credential_cmd_required: bool = False
    """With token exchange: the credential must come from ``TINKER_CREDENTIAL_CMD`` (unless it is a JWT)."""
    finishes_sessions: bool = False
    """``ServiceClient.close(status)`` tells the server (``POST sessions/{id}/finish``), as the official 0.38 SDK."""
    flags: ServerFlags | None = None
    dynamic: DynamicFlags | None = None
    """``None`` when the server has no dynamic config to refresh (0.6.3)."""

    @property
    def version(self) -> str:
        """The protocol spoken: ``"0.38"`` or ``"0.6.3"``."""
        return self.codec.version

    def refresh_interval(self, config: Config) -> float | None:
        """Seconds until the next dynamic-config refresh, or None when there is nothing to refresh."""
        if self.dynamic is None:
            return None
        return max(self.dynamic.refresh_interval_sec, config.min_config_refresh_interval)

    def with_dynamic(self, dynamic: DynamicFlags) -> ProtocolProfile:
        return dataclasses.replace(self, dynamic=dynamic)

    def chunk_limits_for(self, chosen: ChunkLimits | None) -> ChunkLimits:
        """The limits a batch is split by: the server's, tightened by the caller's own when given."""
        return self.chunk_limits if chosen is None else self.chunk_limits.tighter(chosen)

    def __repr__(self) -> str:
        return f"ProtocolProfile(version={self.version!r}, sdk_version={self.sdk_version!r}, how={self.how!r})"


def pinned_profile(config: Config, how: Literal["pinned", "fallback"] = "pinned") -> ProtocolProfile:
    """Protocol 0.6.3: no flags, its fixed chunk limits."""
    codec = client_codec("0.6.3")
    return ProtocolProfile(codec=codec, sdk_version=config.sdk_version or codec.sdk_version, how=how,
                           chunk_limits=LEGACY_CHUNK_LIMITS)


def _profile_038(config: Config, flags: ServerFlags, dynamic: DynamicFlags) -> ProtocolProfile:
    codec = client_codec("0.38")
    return ProtocolProfile(
        codec=codec, sdk_version=config.sdk_version or codec.sdk_version, how="negotiated",
        chunk_limits=ChunkLimits(max_datums=flags.fwdbwd_max_chunk_len, max_numbers=None,
                                 max_bytes=flags.fwdbwd_max_chunk_bytes_count),
        compress_forward_backward=flags.proto_compress_fwdbwd,
        forward_backward_bytes_in_flight=flags.fwdbwd_dispatch_bytes_semaphore_size,
        max_concurrent_samples=flags.sample_max_concurrent_requests,
        sample_bytes_in_flight=flags.sample_dispatch_bytes_semaphore_size,
        response_bytes_in_flight=flags.inflight_response_bytes_semaphore_size,
        sample_retries=not flags.sample_no_retries, sample_stuck_detection=flags.sample_enable_stuck_detection,
        info_on_create=True, sends_process_uuid=True, sessionless_telemetry=True,
        token_exchange=flags.pjwt_auth_enabled,
        credential_cmd_required=flags.pjwt_auth_enabled and flags.credential_default_source == "credential_cmd",
        finishes_sessions=True, flags=flags, dynamic=dynamic)


def _config_body(sdk_version: str) -> bytes:
    return json.dumps({"sdk_version": sdk_version}, separators=(",", ":")).encode()


async def negotiate(http: HttpLayer, config: Config) -> ProtocolProfile:
    """The profile of a new ServiceClient (see the module docstring). Raises the HTTP layer's typed
    errors when the server cannot be asked; with ``protocol="0.38"`` a 404 on ``client/config`` is a
    :class:`~tinker_actors.errors.NotFoundError` saying what to do."""
    if config.protocol == "0.6.3":
        return pinned_profile(config)
    sdk_version = config.sdk_version or client_codec("0.38").sdk_version
    try:
        answer = await http.request(Purpose.SESSION, "POST", CLIENT_CONFIG_PATH, content=_config_body(sdk_version),
                                    response_model=ServerFlags, endpoint="client_config")
    except NotFoundError as missing:
        if config.protocol == "0.38":
            raise error_for_status(
                404, "protocol '0.38' was asked for, but the server does not know POST /api/v1/client/config "
                     "(404): it predates that protocol. Use protocol='auto' (the default) or '0.6.3'.",
                response=missing.response, body=missing.body) from None
        if level_enabled(config.log_level, "info"):
            log.info("protocol.fallback", protocol="0.6.3", base_url=config.base_url,
                     reason="the server does not know client/config (404): it predates protocol 0.38")
        return pinned_profile(config, how="fallback")
    dynamic = await fetch_dynamic_flags(http, sdk_version, retry=config.retry, missing_ok=True)
    return _profile_038(config, answer.data, dynamic)


async def fetch_dynamic_flags(http: HttpLayer, sdk_version: str, *, retry: RetryPolicy,
                              missing_ok: bool) -> DynamicFlags:
    """``POST client/dynamic_config``; a 404 gives the defaults when ``missing_ok`` (the server predates it)."""
    try:
        answer = await http.request(Purpose.SESSION, "POST", DYNAMIC_CONFIG_PATH, content=_config_body(sdk_version),
                                    response_model=DynamicFlags, retry=retry, timeout=http.config.timeouts.heartbeat,
                                    endpoint="client_dynamic_config")
    except NotFoundError:
        if not missing_ok:
            raise
        return DynamicFlags()
    return answer.data
