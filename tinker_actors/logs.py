"""Logging helpers that keep secrets out of log lines.

The library logs through structlog (``structlog.get_logger("tinker_actors.<part>")``) and never
configures logging itself: no ``basicConfig``, no ``structlog.configure`` at import. How chatty it is
comes from ``Config.log_level`` (``TINKER_LOG``), checked before an event is built, because an
unconfigured structlog prints every level to stdout and the host application did not ask for that.

Redaction is by header name (:data:`SECRET_HEADERS`), by key name in event dicts
(:func:`redact_event`, usable as a structlog processor by applications that want a second line of
defence) and by value for free text (:func:`redact_text`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

__all__ = [
    "LEVELS",
    "REDACTED",
    "SECRET_HEADERS",
    "get_logger",
    "level_enabled",
    "redact_event",
    "redact_headers",
    "redact_text",
]

REDACTED = "**********"

# Lower-case header names whose values are credentials.
SECRET_HEADERS: frozenset[str] = frozenset({
    "x-api-key",
    "x-tinker-weights-access-token",  # copy_weights: a credential for another account's weights
    "authorization",
    "proxy-authorization",
    "cf-access-client-secret",
    "cookie",
    "set-cookie",
})

# Event-dict keys whose values are never logged, whatever their type.
_SECRET_KEYS: frozenset[str] = frozenset({
    "api_key", "apikey", "x-api-key", "authorization", "password", "secret", "token",
    "cf_access_client_secret", "cf-access-client-secret",
})

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def get_logger(name: str) -> Any:
    """The structlog logger for one part of the library (e.g. ``"tinker_actors.http"``)."""
    return structlog.get_logger(name)


def level_enabled(configured: str, wanted: str) -> bool:
    """Whether an event at level ``wanted`` passes the configured threshold (``Config.log_level``)."""
    return LEVELS.get(wanted, 30) >= LEVELS.get(configured, 30)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A plain copy of the headers, safe to log: credential headers' values are replaced."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: (REDACTED if name.lower() in SECRET_HEADERS else value) for name, value in items}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value replaced (for bodies echoed in errors)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_event(_logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: secret-looking keys blanked, header dicts passed through redact_headers."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if lowered in _SECRET_KEYS:
            event_dict[key] = REDACTED
        elif "header" in lowered and isinstance(value, Mapping):
            event_dict[key] = redact_headers(value)
    return event_dict
