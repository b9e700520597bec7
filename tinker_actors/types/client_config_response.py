"""``ClientConfigResponse`` (protocol 0.38): the flags ``client/config`` answers, at the official defaults.

Unknown flags are ignored (``{}`` means every default). This is the whole answer as the official SDK reads
it; what tinker-actors obeys, and with which bounds, is ``tinker_actors.clients.protocol.ServerFlags``
(docs/protocols.md lists the flags it does not act on).
"""

from __future__ import annotations

from tinker_actors.types._base import ResponseModel

__all__ = ["ClientConfigResponse"]


class ClientConfigResponse(ResponseModel):
    pjwt_auth_enabled: bool = False
    """Exchange the credential for short-lived tokens (``POST auth/token``) and send those."""
    credential_default_source: str = "api_key"
    """``credential_cmd``: the organization requires a credential command."""
    sample_dispatch_bytes_semaphore_size: int = 10 * 1024 * 1024
    inflight_response_bytes_semaphore_size: int = 50 * 1024 * 1024
    parallel_fwdbwd_chunks: bool = True
    proto_compress_fwdbwd: bool = False
    """Compress forward_backward request bodies with zstd."""
    fwdbwd_max_chunk_len: int = 1024
    """Datums per forward_backward chunk, at most."""
    fwdbwd_max_chunk_bytes_count: int = 5_000_000
    """Estimated protobuf bytes per forward_backward chunk (before compression), at most."""
    fwdbwd_dispatch_bytes_semaphore_size: int = 50_000_000
    """Estimated forward_backward bytes being sent at once, at most."""
    billing_exception_max_pause_duration_sec: int = 3600
    """How long requests answered 402 (billing) pause before they fail."""
    sample_no_retries: bool = False
    sample_enable_stuck_detection: bool = True
    sample_max_concurrent_requests: int = 2000
    """Sampling requests in flight per SamplingClient, at most."""
    use_pyqwest_transport: bool = True
    sample_use_retrieve_futures: bool = False
    """Poll a sampling session's results together (``POST retrieve_futures``)."""
    custom_loss_server_side: bool = False
    """Upload traced custom losses and run them on the server."""
    sample_join_sampling_session: bool = False
    """An unpickled SamplingClient asks ``join_sampling_session`` for its clone number."""
