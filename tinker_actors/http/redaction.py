"""Copies of httpx requests and responses that errors may keep: no credentials, no echoed secrets.

Errors keep a ``request`` and a ``response`` as the official SDK's do, but an exception may be logged,
pickled, sent back from a worker process or shown in a traceback viewer by code we do not control. So
what an error holds is a copy: credential headers (by name) replaced, every secret value (the API
key, the Cloudflare secret) replaced wherever it appears in a header value or the body, and the
history of redirects redacted the same way. The originals, which hold the key in their request
headers, are dropped with the attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import httpx

from tinker_actors.logs import REDACTED, SECRET_HEADERS, redact_text

__all__ = ["redacted_request", "redacted_response"]

# The copy holds the decoded body, re-measured: these headers of the original would describe it wrongly.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_REDACTED_BYTES = REDACTED.encode()


def _headers(headers: httpx.Headers, secrets: Sequence[str], *, drop: frozenset[str] = frozenset()
             ) -> list[tuple[str, str]]:
    kept = []
    for name, value in headers.multi_items():
        lowered = name.lower()
        if lowered in drop:
            continue
        kept.append((name, REDACTED if lowered in SECRET_HEADERS else redact_text(value, secrets)))
    return kept


def _content(content: bytes, secrets: Sequence[str]) -> bytes:
    for secret in secrets:
        encoded = secret.encode()
        if encoded and encoded in content:
            content = content.replace(encoded, _REDACTED_BYTES)
    return content


def redacted_request(request: httpx.Request | None, secrets: Sequence[str]) -> httpx.Request | None:
    """Method, URL and headers of ``request`` without credentials; no body (it was ours, and may be large)."""
    if request is None:
        return None
    return httpx.Request(request.method, request.url, headers=_headers(request.headers, secrets))


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a response built without a request has none
        return None


def redacted_response(response: httpx.Response, secrets: Sequence[str]) -> httpx.Response:
    """A read response's copy for an error: status, redacted headers, redacted (decoded) body and history.

    Never carries ``next_request`` (httpx builds it with every header of the original, the key included).
    """
    copy = httpx.Response(
        response.status_code,
        headers=_headers(response.headers, secrets, drop=_BODY_FRAMING),
        content=_content(response.content, secrets),
        request=redacted_request(_request_of(response), secrets),
        history=[redacted_response(earlier, secrets) for earlier in response.history],
        extensions={name: response.extensions[name] for name in ("http_version", "reason_phrase")
                    if name in response.extensions},
    )
    with contextlib.suppress(RuntimeError):  # only set once the original was closed
        copy.elapsed = response.elapsed
    return copy
