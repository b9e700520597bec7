"""The headers every request carries (WIRE-PROTOCOL.md §1.2), and the per-call ones.

Static headers (user agent, accept, API key, Cloudflare Access, the config's extra headers) are set
once on each httpx client; per call only the content type, the idempotency key and the retry count
are added, which keeps the hot path to one small dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tinker_actors._version import __version__
from tinker_actors.config import Config

__all__ = [
    "IDEMPOTENCY_KEY",
    "RETRY_COUNT",
    "USER_AGENT",
    "call_headers",
    "default_headers",
    "new_idempotency_key",
]

USER_AGENT = f"tinker-actors/{__version__}"

# Lower-case header names; HTTP header names are case-insensitive.
IDEMPOTENCY_KEY = "x-idempotency-key"
# The official SDK's name, kept so that servers (and the local service's logs) see the same header.
RETRY_COUNT = "x-stainless-retry-count"
_CONTENT_TYPE = "content-type"
_JSON = "application/json"


def default_headers(config: Config) -> dict[str, str]:
    """The headers sent on every request of this config. Contains the API key: never log it raw."""
    headers = {
        "user-agent": USER_AGENT,
        "accept": _JSON,
        "x-api-key": config.require_api_key(),
    }
    if config.cf_access_client_id:
        headers["cf-access-client-id"] = config.cf_access_client_id
    if config.cf_access_client_secret is not None:
        headers["cf-access-client-secret"] = config.cf_access_client_secret.get_secret_value()
    for name, value in config.default_headers:
        headers[name.lower()] = value
    return headers


def new_idempotency_key() -> str:
    """A fresh random key (128 bits); one per logical call, kept across that call's retries."""
    return "tinker-actors-retry-" + os.urandom(16).hex()  # cheaper than uuid4() on the hot path


def call_headers(method: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The per-call headers: content type and idempotency key on non-GET, then the caller's own.

    A caller may pass its own ``X-Idempotency-Key`` (e.g. to keep one key across a higher-level
    retry); it then replaces the generated one.
    """
    headers: dict[str, str] = {RETRY_COUNT: "0"}
    if method != "GET" and method != "HEAD":
        headers[_CONTENT_TYPE] = _JSON
        headers[IDEMPOTENCY_KEY] = new_idempotency_key()
    headers.update(_trace_headers())  # W3C trace context of the caller's span, when OpenTelemetry is installed
    if extra:
        for name, value in extra.items():
            headers[name.lower()] = value
    return headers


def _trace_headers() -> dict[str, str]:
    # Imported here: telemetry sits above the HTTP layer (it imports the clients), so a module-level
    # import would be circular. After the first call this is a sys.modules lookup.
    from tinker_actors.telemetry.otel import trace_headers

    return trace_headers()
