"""Which redirects an API call may follow: same origin only, so the API key never leaves the API.

httpx, when it follows a redirect to another origin, drops ``Authorization`` but keeps every other
header, ``X-API-Key`` and ``CF-Access-Client-Secret`` included. So the HTTP layer never lets httpx follow
redirects: it follows a redirect itself when the target has the same origin (scheme, host and port)
as the request, and turns any other into a :class:`~tinker_actors.errors.CrossOriginRedirectError`
without sending anything there. A change of scheme is another origin: https to http never carries
the key, and neither does http to https (set ``base_url`` to the https address instead).

A redirect the caller expects (the checkpoint archive's 302 to a signed download URL) is listed in
``accept_status`` and handed back unfollowed; whoever fetches that URL does so without the key.
"""

from __future__ import annotations

import httpx

__all__ = ["MAX_REDIRECTS", "origin_of", "same_origin"]

# Same-origin hops one call may follow (httpx's default is 20; an API has no business chaining more).
MAX_REDIRECTS = 10

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _port(url: httpx.URL) -> int | None:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Whether two URLs share scheme, host and (default-filled) port."""
    return url.scheme == other.scheme and url.host == other.host and _port(url) == _port(other)


def origin_of(url: httpx.URL) -> str:
    """``scheme://host:port`` of a URL, for messages (never its path or query, which may hold a token)."""
    port = _port(url)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}" + (f":{port}" if port is not None else "")
