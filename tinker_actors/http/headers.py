"""The headers every request carries (WIRE-PROTOCOL.md §1.2), and the per-call ones.

Static headers (user agent, accept, Cloudflare Access, the config's extra headers) are set once on each
httpx client; per call only the content type, the idempotency key and the retry count are added, which
keeps the hot path to one small dict. The credential (``X-API-Key``) is set per attempt by the HTTP
layer from its :class:`~tinker_actors.auth.tokens.TokenHolder`: an API key as it is, or the short-lived
token it was exchanged for, which changes while a client lives (docs/accounts.md).

Protocol 0.38 also names the SDK version and the public method that made a request
(``x-sdk-version``, ``x-sdk-method``, e.g. ``TrainingClient.forward_backward``), as the official SDK
does: the method travels in a context variable set by :func:`sdk_method` (the clients wrap their public
methods in it), so the polls and retries a call starts in the IoLoop carry it too. Requests made
outside a public method (session start, heartbeats, config refreshes) carry neither.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping

from tinker_actors._version import __version__
from tinker_actors.config import Config

__all__ = [
    "API_KEY",
    "IDEMPOTENCY_KEY",
    "RETRY_COUNT",
    "SDK_METHOD",
    "SDK_VERSION",
    "USER_AGENT",
    "call_headers",
    "current_sdk_method",
    "default_headers",
    "new_idempotency_key",
    "sdk_method",
]

USER_AGENT = f"tinker-actors/{__version__}"

# Lower-case header names; HTTP header names are case-insensitive.
API_KEY = "x-api-key"
IDEMPOTENCY_KEY = "x-idempotency-key"
# The official SDK's name, kept so that servers (and the local service's logs) see the same header.
RETRY_COUNT = "x-stainless-retry-count"
_CONTENT_TYPE = "content-type"
_JSON = "application/json"
SDK_VERSION = "x-sdk-version"
SDK_METHOD = "x-sdk-method"

_sdk_method: contextvars.ContextVar[str | None] = contextvars.ContextVar("tinker_actors_sdk_method", default=None)


@contextlib.contextmanager
def sdk_method(name: str) -> Iterator[None]:
    """Requests made inside this block are made by the public method ``name`` (the outermost call wins:
    ``create_lora_training_client`` calling ``create_lora_training_client_future`` keeps its own name)."""
    if _sdk_method.get() is not None:
        yield
        return
    token = _sdk_method.set(name)
    try:
        yield
    finally:
        _sdk_method.reset(token)


def current_sdk_method() -> str | None:
    """The public method whose requests are being made, if any."""
    return _sdk_method.get()


def default_headers(config: Config) -> dict[str, str]:
    """The static headers sent on every request of this config (the credential is set per attempt). May
    contain the Cloudflare Access secret: never log it raw."""
    headers = {
        "user-agent": USER_AGENT,
        "accept": _JSON,
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


def call_headers(method: str, extra: Mapping[str, str] | None, sdk_version: str | None = None) -> dict[str, str]:
    """The per-call headers: content type and idempotency key on non-GET, the SDK version and method
    when ``sdk_version`` is given and a public method is making the request, then the caller's own.

    A caller may pass its own ``X-Idempotency-Key`` (e.g. to keep one key across a higher-level
    retry); it then replaces the generated one.
    """
    headers: dict[str, str] = {RETRY_COUNT: "0"}
    if method != "GET" and method != "HEAD":
        headers[_CONTENT_TYPE] = _JSON
        headers[IDEMPOTENCY_KEY] = new_idempotency_key()
    if sdk_version is not None:
        name = _sdk_method.get()
        if name is not None:
            headers[SDK_VERSION] = sdk_version
            headers[SDK_METHOD] = name
    headers.update(_trace_headers())  # W3C trace context of the caller's span, when OpenTelemetry is installed
    if extra:
        for name, value in extra.items():
            headers[name.lower()] = value
    return headers


_trace_source: Callable[[], dict[str, str]] | None = None


def _trace_headers() -> dict[str, str]:
    # Imported on first use: telemetry sits above the HTTP layer (it imports the clients), so a module-level
    # import would be circular. Kept afterwards: an import statement runs on every request otherwise, and it
    # lets go of the GIL (other threads run meanwhile; measured: 10 to 16 us of the I/O loop per request
    # with another thread busy, 0.3 us kept).
    global _trace_source
    if _trace_source is None:
        from tinker_actors.telemetry.otel import trace_headers

        _trace_source = trace_headers
    return _trace_source()
