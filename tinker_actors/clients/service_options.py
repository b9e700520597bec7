"""The keywords of ``ServiceClient(...)`` turned into one :class:`Config`.

Besides ``api_key=``, ``base_url=`` and ``config=``, a ServiceClient accepts the official SDK 0.6.3's
constructor keywords, with the same meaning:

* ``timeout``: seconds (a number: connect and read limit alike, as ``httpx.Timeout(t)``) or an
  ``httpx.Timeout`` (its ``connect`` and ``read`` values); becomes ``Config.timeouts.connect`` /
  ``.default``. A ``None`` (no limit) is refused: every request here is bounded.
* ``max_retries``: retries of one HTTP call, ``Config.retry.max_retries``.
* ``default_headers`` / ``default_query``: sent with every request.
* ``http_client``: refused with a typed error saying what to use instead (this SDK keeps its own pools).

and any :class:`Config` field by name (``tags=``, ``telemetry_enabled=``, ``retry=``, ...). Anything else is
an :class:`UnexpectedArgumentError` naming it; a bad value an :class:`InvalidInputError` naming the setting.
Neither quotes a value (it could be a secret).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from tinker_actors.config import Config, RetryPolicy, Timeouts
from tinker_actors.errors import InvalidInputError

__all__ = ["OFFICIAL_KEYWORDS", "UnexpectedArgumentError", "build_config"]

OFFICIAL_KEYWORDS = ("timeout", "max_retries", "default_headers", "default_query", "http_client")
"""The official SDK's ``ServiceClient`` keywords this one understands (``http_client`` only to refuse it)."""

_OWN_KEYWORDS = ("user_metadata", "api_key", "base_url", "config", "chunk_limits")

_HTTP_CLIENT_REFUSED = (
    "ServiceClient(http_client=...) is not supported: tinker-actors keeps its own httpx clients (separate pools "
    "for sessions, training, sampling, futures and telemetry), so a client of yours would be bypassed. Use "
    "timeout=, max_retries=, default_headers= or default_query=, or pass config=Config(timeouts=Timeouts(...), "
    "retry=RetryPolicy(...), pools=Pools(...)); proxies come from the HTTP_PROXY / HTTPS_PROXY environment "
    "variables.")


class UnexpectedArgumentError(InvalidInputError, TypeError):
    """``ServiceClient(...)`` got a keyword it does not know. Also a ``TypeError``, as Python raises for an
    unexpected keyword, so ``except TypeError`` written for the official SDK still catches it."""


def build_config(config: Config | None, *, api_key: str | None, base_url: str | None,
                 keywords: Mapping[str, Any]) -> Config:
    """The Config of a new ServiceClient: ``config`` (or the environment) with the keywords applied."""
    try:
        base = config if config is not None else Config.from_env()
    except ValidationError as invalid:  # a bad value in the environment (TINKER_ACTORS_PROTOCOL=0.25, ...)
        raise InvalidInputError(f"invalid settings in the environment: {_describe(invalid)}") from None
    overrides = _overrides(base, keywords)
    overrides.update({name: value for name, value in (("api_key", api_key), ("base_url", base_url))
                      if value is not None})
    try:
        if config is None:
            return Config.from_env(**overrides)
        return config.replace(**overrides) if overrides else config
    except ValidationError as invalid:
        raise InvalidInputError(f"invalid ServiceClient settings: {_describe(invalid)}") from None


def _overrides(base: Config, keywords: Mapping[str, Any]) -> dict[str, Any]:
    for official, ours in (("timeout", "timeouts"), ("max_retries", "retry")):
        if official in keywords and ours in keywords:
            raise InvalidInputError(f"pass either {official}= (as in the official SDK) or {ours}= (a Config "
                                    "field), not both")
    overrides: dict[str, Any] = {}
    for name, value in keywords.items():
        if name == "http_client":
            raise InvalidInputError(_HTTP_CLIENT_REFUSED)
        if name == "timeout":
            overrides["timeouts"] = _timeouts(base.timeouts, value)
        elif name == "max_retries":
            overrides["retry"] = _retry(base.retry, value)
        elif name in Config.model_fields:
            overrides[name] = value
        else:
            raise UnexpectedArgumentError(_unexpected(name))
    return overrides


def _timeouts(base: Timeouts, value: object) -> Timeouts:
    if isinstance(value, httpx.Timeout):
        connect, read = value.connect, value.read
    elif isinstance(value, int | float) and not isinstance(value, bool):
        connect = read = float(value)
    else:
        raise InvalidInputError("timeout= takes seconds (a number) or an httpx.Timeout, got "
                                f"{type(value).__name__}")
    if connect is None or read is None:
        raise InvalidInputError("timeout= without a limit (None) is not supported: every request here is "
                                "bounded. Give seconds, e.g. timeout=600 or httpx.Timeout(600, connect=5)")
    if connect <= 0 or read <= 0:
        raise InvalidInputError("timeout= must be more than 0 seconds")
    return base.model_copy(update={"connect": connect, "default": read})


def _retry(base: RetryPolicy, value: object) -> RetryPolicy:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError("max_retries= takes a whole number of retries >= 0 (0 disables retries; each "
                                "call is also bounded by Config.retry.deadline)")
    return base.model_copy(update={"max_retries": value})


def _unexpected(name: str) -> str:
    known = (*_OWN_KEYWORDS, *OFFICIAL_KEYWORDS[:-1], *Config.model_fields)
    close = difflib.get_close_matches(name, known, n=2)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return (f"ServiceClient() got an unexpected keyword argument {name!r}.{hint} It takes "
            f"{', '.join(_OWN_KEYWORDS)}; the official SDK's timeout, max_retries, default_headers and "
            f"default_query; and any Config field as an override: {', '.join(Config.model_fields)}.")


def _describe(invalid: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                     for error in invalid.errors(include_input=False, include_url=False))
