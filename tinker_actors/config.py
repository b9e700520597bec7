"""Configuration: explicit arguments > environment variables > defaults.

One frozen :class:`Config` is built per ``ServiceClient`` and handed to every layer (HTTP, futures,
sessions, telemetry), so several configurations can live side by side in one process. Copy it with
changes through :meth:`Config.replace`.

Environment variables (read only by :meth:`Config.from_env`, never at import):

=================================== ===============================================================
``TINKER_API_KEY``                  the API key (a secret: never shown in reprs, logs or errors)
``TINKER_CREDENTIAL_CMD``           a shell command that prints a credential (docs/accounts.md); used
                                    when neither ``api_key=`` nor ``TINKER_API_KEY`` is given, and
                                    when the server requires dynamic credentials
``HOME``                            where the stored credentials are (``~/.tinker/credentials.json``,
                                    written by ``tinker-actors auth login`` or ``tinker auth login``):
                                    their default key is used when no other credential is given
``TINKER_BASE_URL``                 base URL; may carry a path prefix (default :data:`DEFAULT_BASE_URL`)
``TINKER_TAGS``                     comma-separated session tags (duplicates dropped, order kept)
``TINKER_PROJECT_ID``               the project new sessions go into (``Config.project_id``)
``TINKER_TELEMETRY``                ``1/true/yes/on`` (the default) enables telemetry; anything else
                                    disables it
``TINKER_LOG``                      ``debug`` / ``info`` / ``warning`` / ``error``: how chatty this
                                    library's own structlog events are (the host's logging setup is
                                    never touched)
``TINKER_ACTORS_PROTOCOL``          ``auto`` (the default), ``0.38`` or ``0.6.3``: the wire protocol
``CLOUDFLARE_ACCESS_CLIENT_ID``     sent as ``CF-Access-Client-Id`` on every request
``CLOUDFLARE_ACCESS_CLIENT_SECRET`` sent as ``CF-Access-Client-Secret`` (a secret)
=================================== ===============================================================

Unlike the official SDK 0.6.3 (where an API key in the environment beats ``api_key=``), an explicit
argument always wins. Credentials are looked for in this order: ``api_key=``, ``TINKER_API_KEY``,
``TINKER_CREDENTIAL_CMD``, the stored default key (:attr:`Config.api_key_origin` says which one gave
the key; the command is run later, by :mod:`tinker_actors.auth`, never here).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from tinker_actors.auth.store import CredentialsFile, default_credentials_path
from tinker_actors.errors import ErrorCategory, InvalidInputError, TinkerError

__all__ = [
    "API_KEY_PREFIXES",
    "DEFAULT_BASE_URL",
    "ApiKeyOrigin",
    "AuthSettings",
    "BillingPauseSettings",
    "Config",
    "InvalidApiKeyError",
    "InvalidSecretError",
    "LogLevel",
    "MissingApiKeyError",
    "PollBackoff",
    "PoolLimits",
    "Pools",
    "Protocol",
    "RetryPolicy",
    "TelemetrySettings",
    "Timeouts",
    "WaitWarnings",
    "check_api_key_format",
]

DEFAULT_BASE_URL = "https://tinker.thinkingmachines.dev/services/tinker-prod"

LogLevel = Literal["debug", "info", "warning", "error"]

Protocol = Literal["auto", "0.38", "0.6.3"]
"""Which wire protocol a ServiceClient speaks (docs/protocols.md): ``"auto"`` asks the server
(``client/config``) and falls back to 0.6.3 when it does not know that call."""

ApiKeyOrigin = Literal["argument", "environment", "stored"]
"""Where ``Config.api_key`` came from: ``api_key=`` (or ``Config(api_key=...)``), ``TINKER_API_KEY``, or the
stored credentials file."""

_TRUTHY = frozenset({"1", "true", "yes", "on"})
_LOG_LEVELS: frozenset[str] = frozenset({"debug", "info", "warning", "error"})

# Field name -> environment variable, for the plain (string-valued) settings.
_ENV_VARS: dict[str, str] = {
    "api_key": "TINKER_API_KEY",
    "credential_cmd": "TINKER_CREDENTIAL_CMD",
    "base_url": "TINKER_BASE_URL",
    "cf_access_client_id": "CLOUDFLARE_ACCESS_CLIENT_ID",
    "cf_access_client_secret": "CLOUDFLARE_ACCESS_CLIENT_SECRET",
    "protocol": "TINKER_ACTORS_PROTOCOL",
    "project_id": "TINKER_PROJECT_ID",
}


class MissingApiKeyError(TinkerError, ValueError):
    """No credential was given: no ``api_key=``, no ``TINKER_API_KEY``, no ``TINKER_CREDENTIAL_CMD`` and no
    stored default key."""

    default_category = ErrorCategory.USER

    def __init__(self, message: str = (
            "No Tinker API key: pass api_key=... (e.g. ServiceClient(api_key=...)), set the TINKER_API_KEY "
            "environment variable, set TINKER_CREDENTIAL_CMD to a command that prints a credential, or store "
            "a key with `tinker-actors auth login`.")) -> None:
        super().__init__(message)


class InvalidApiKeyError(InvalidInputError):
    """The API key is neither a Tinker key (``tml-...``) nor a JWT (``eyJ...``), the two kinds the service issues.

    The message names where the key came from, never its value.
    """


API_KEY_PREFIXES: tuple[str, ...] = ("tml-", "eyJ")
"""What a credential starts with: a Tinker API key, or a JWT (a base64url-encoded JSON header)."""


def check_api_key_format(key: str, source: str = "the API key (api_key= / TINKER_API_KEY)") -> str:
    """``key`` if it looks like a Tinker credential, else :class:`InvalidApiKeyError` (never quoting it)."""
    if not key.startswith(API_KEY_PREFIXES):
        raise InvalidApiKeyError(
            f"{source} is not a Tinker API key: keys start with 'tml-' (or are a JWT, starting with 'eyJ'). "
            "Check the value (it is not shown here); keys are issued in the Tinker console.")
    return key


class InvalidSecretError(InvalidInputError):
    """A secret (the API key, the Cloudflare Access client secret) holds a character that cannot go in an
    HTTP header: a control character such as a newline inside it, or a non-ASCII character.

    Whitespace around a secret (``open(path).read()`` leaves a trailing newline) is removed silently; this
    is raised only for what remains inside. The message names the setting, never its value.
    """


# Setting name -> how a message calls it. Their values are checked before any validation (so that a bad
# one never reaches a pydantic error, which would quote it) and stripped of surrounding whitespace.
_SECRET_SETTINGS: dict[str, str] = {
    "api_key": "the API key (api_key= / TINKER_API_KEY)",
    "cf_access_client_secret": "the Cloudflare Access client secret (CLOUDFLARE_ACCESS_CLIENT_SECRET)",
}


def _clean_secret(field: str, value: object) -> object:
    """``value`` stripped of surrounding whitespace, or :class:`InvalidSecretError` (which never quotes it)."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(text, str):
        return value  # not a string: the field's own validation rejects it (without quoting it)
    text = text.strip()
    for char in text:
        if not " " <= char <= "~":
            kind = "a control character (such as a newline or a tab)" if not char.isprintable() or char.isspace() \
                else "a non-ASCII character"
            raise InvalidSecretError(
                f"{_SECRET_SETTINGS[field]} contains {kind}, which cannot be sent in an HTTP header. Whitespace "
                "around it is removed, but not inside it: check the value (it is not shown here).")
    return text


def _clean_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = dict(values)
    for field in _SECRET_SETTINGS:
        if cleaned.get(field) is not None:
            cleaned[field] = _clean_secret(field, cleaned[field])
    return cleaned


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Timeouts(_Frozen):
    """Per-request HTTP timeouts in seconds (one attempt; retries get a fresh timeout each)."""

    default: float = Field(60.0, gt=0, description="read/write/pool timeout of an ordinary request")
    connect: float = Field(5.0, gt=0, description="TCP/TLS connect timeout of every request")
    retrieve_future: float = Field(45.0, gt=0, description="one poll; the server long-polls below this")
    heartbeat: float = Field(10.0, gt=0)
    telemetry: float = Field(5.0, gt=0)
    finish_session: float = Field(10.0, gt=0, description="how long close() waits for the server to finish the "
                                                           "session (then it logs the failure and closes anyway)")


class RetryPolicy(_Frozen):
    """How one HTTP call retries connection errors, timeouts and 408/409/429/5xx answers.

    The n-th retry (n = 0, 1, ...) waits ``min(base_delay * 2**n, max_delay)`` multiplied by a
    jitter factor drawn uniformly from ``[1 - jitter, 1]`` (the official SDK's multiplicative
    jitter: with the default 0.25, between 75 % and 100 % of the nominal delay), unless the server
    asked for a specific wait with ``Retry-After`` / ``retry-after-ms`` between 0 and
    ``max_retry_after`` seconds, which is then used as is.

    ``deadline`` bounds the whole call (every attempt and every wait): no attempt outlives it and
    no wait would end past it; when the next wait would cross it, the last error is raised.
    ``None`` means the call is bounded only by ``max_retries`` and the per-request timeout.
    """

    max_retries: int = Field(10, ge=0, description="retries after the first attempt")
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(10.0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1)
    deadline: float | None = Field(120.0, gt=0)
    max_retry_after: float = Field(60.0, ge=0, description="largest server-requested wait honoured")

    @classmethod
    def disabled(cls, *, deadline: float | None = None) -> RetryPolicy:
        """A policy that never retries (the futures poller and the sampler do their own retrying)."""
        return cls(max_retries=0, deadline=deadline)

    def backoff(self, retry_index: int, rng: random.Random | None = None) -> float:
        """The jittered wait before retry number ``retry_index`` (0-based)."""
        nominal = min(self.base_delay * (2.0 ** min(retry_index, 62)), self.max_delay)
        draw = (rng or random).random()
        return nominal * (1.0 - self.jitter * draw)


class PollBackoff(_Frozen):
    """Waits between polls of a pending future: ``initial`` doubling (``multiplier``) up to ``max``.

    The official SDK re-polls with no wait at all (about a thousand polls a second on a server that
    does not long-poll); this keeps a few polls a second at most. Reset after any progress.
    """

    initial: float = Field(0.1, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max: float = Field(1.0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1, description="same multiplicative jitter as RetryPolicy")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait before poll number ``attempt + 1`` (0-based count of empty polls)."""
        nominal = min(self.initial * (self.multiplier ** min(attempt, 62)), self.max)
        draw = (rng or random).random()
        return nominal * (1.0 - self.jitter * draw)


class WaitWarnings(_Frozen):
    """When a wait that makes no progress is announced (tinker_actors.waits, docs/concepts/failures.md).

    One ``wait.stalled`` warning once a wait has made no progress for ``first_after`` seconds, then at most
    one line per condition (the kind of the last answer) every ``repeat_after`` seconds.
    """

    first_after: float = Field(30.0, gt=0, description="seconds without progress before the first warning")
    repeat_after: float = Field(300.0, gt=0, description="seconds before the same condition is logged again")


class BillingPauseSettings(_Frozen):
    """How requests answered 402 (billing) wait: they pause and retry with backoff (``initial_delay`` doubling to
    ``max_delay``) until the account can pay again, for at most ``max_pause`` seconds from the first 402 of the
    incident; then they fail with :class:`~tinker_actors.errors.BillingError`. Other requests keep going."""

    max_pause: float | None = Field(None, gt=0, description=(
        "seconds a billing incident may pause requests; None: the server's billing_exception_max_pause_duration_sec "
        "(client/config), 3600 s when it names none"))
    initial_delay: float = Field(1.0, gt=0, description="first wait before a paused request is retried")
    max_delay: float = Field(30.0, gt=0, description="longest wait between two retries of a paused request")


class PoolLimits(_Frozen):
    """``clients`` independent httpx clients (used round-robin), each with its own connection limits.

    Several small pools beat one big one: httpx re-scans its whole pool whenever a request starts
    or ends, so one pool with hundreds of requests in flight burns a core on bookkeeping.
    """

    clients: int = Field(1, ge=1)
    max_connections: int = Field(64, ge=1)
    max_keepalive: int = Field(16, ge=0)

    @property
    def capacity(self) -> int:
        """How many requests of this purpose can be on the wire at once."""
        return self.clients * self.max_connections


class CircuitBreakerSettings(_Frozen):
    """Per-endpoint circuit breaking (off unless ``Config.circuit_breaker`` is set): after
    ``failure_threshold`` consecutive connection errors, timeouts or 5xx answers, calls to that endpoint
    fail fast with ``CircuitOpenError`` for ``reset_timeout`` seconds, then one trial call decides."""

    failure_threshold: int = Field(5, ge=1)
    reset_timeout: float = Field(30.0, gt=0)


class Pools(_Frozen):
    """One set of limits per purpose, so that one kind of traffic cannot starve another."""

    session: PoolLimits = PoolLimits(clients=1, max_connections=16, max_keepalive=8)
    training: PoolLimits = PoolLimits(clients=2, max_connections=32, max_keepalive=16)
    # Many small pools: at 256 requests in flight, 32 clients x 8 busy connections used ~35 % less CPU
    # per request than 8 clients x 32 (bench/bench_http.py).
    sampling: PoolLimits = PoolLimits(clients=32, max_connections=16, max_keepalive=16)
    futures: PoolLimits = PoolLimits(clients=32, max_connections=16, max_keepalive=16)
    telemetry: PoolLimits = PoolLimits(clients=1, max_connections=4, max_keepalive=2)


class TelemetrySettings(_Frozen):
    """How the per-session telemetry reporter batches and uploads events (docs/telemetry.md)."""

    batch_size: int = Field(100, ge=1, description="events per POST /api/v1/telemetry")
    flush_interval: float = Field(10.0, gt=0, description="seconds between periodic flushes")
    flush_threshold: int = Field(100, ge=1, description="a flush starts as soon as this many events wait")
    max_queue: int = Field(10_000, ge=1, description="events held at most; newer ones are dropped and counted")
    upload_attempts: int = Field(4, ge=1, description="tries per batch (first one included) before it is given up")
    retry_base_delay: float = Field(1.0, ge=0, description="wait before the 2nd try, doubling after each failure")
    retry_max_delay: float = Field(8.0, ge=0)
    drain_timeout: float = Field(2.0, ge=0, description="how long closing a session may spend sending what is left")
    stats_interval: float | None = Field(
        60.0, gt=0, description="seconds between client_stats events (per-endpoint counters); None: never")


class AuthSettings(_Frozen):
    """Credential commands and short-lived tokens (docs/accounts.md)."""

    credential_cmd_timeout: float = Field(30.0, gt=0, description=(
        "seconds TINKER_CREDENTIAL_CMD may run before it is stopped and the credential counts as failed"))
    refresh_margin: float = Field(60.0, gt=0, description=(
        "a request that finds the token this close to expiry (or within a quarter of its lifetime, if less) "
        "waits for a fresh one; tokens are otherwise refreshed at about half their lifetime"))
    retry_delay: float = Field(60.0, gt=0, description=(
        "longest wait before a failed token refresh is tried again (shorter for short-lived tokens)"))


_ORIGIN_LABELS: dict[str, str] = {
    "argument": "the API key (api_key= / TINKER_API_KEY)",
    "environment": "the API key in TINKER_API_KEY",
    "stored": "the stored default key (~/.tinker/credentials.json)",
}


class Config(_Frozen):
    """Everything a client needs to talk to one Tinker service. Frozen; copy with :meth:`replace`.

    Secrets are stripped of surrounding whitespace; one with a control or non-ASCII character inside raises
    :class:`InvalidSecretError` (never quoting it), and no validation error of a Config quotes its input.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    api_key: SecretStr | None = None
    api_key_origin: ApiKeyOrigin = Field("argument", description=(
        "where api_key came from (set by from_env; shown by `tinker-actors auth status`)"))
    credential_cmd: SecretStr | None = Field(None, description=(
        "TINKER_CREDENTIAL_CMD: a shell command printing a credential (kept out of reprs and pickles: it may "
        "hold a secret of its own)"))
    auth: AuthSettings = AuthSettings()
    base_url: str = DEFAULT_BASE_URL
    console_url: str | None = Field(None, description=(
        "the service's web console, for get_console_url() links; None: the hosted console for the hosted service, "
        "none otherwise (tinker_actors.console)"))
    tags: tuple[str, ...] = ()
    telemetry_enabled: bool = True
    log_level: LogLevel = "warning"
    cf_access_client_id: str | None = None
    cf_access_client_secret: SecretStr | None = None
    default_headers: tuple[tuple[str, str], ...] = ()
    default_query: tuple[tuple[str, str], ...] = ()
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    poll_backoff: PollBackoff = PollBackoff()
    no_progress_timeout: float = Field(
        120.0, gt=0, description="a wait fails once the server was unreachable or made no progress this long")
    pending_timeout: float = Field(
        3600.0, gt=0, description="a future the server keeps answering 'pending' for fails after this long")
    wait_warnings: WaitWarnings = WaitWarnings()
    heartbeat_interval: float = Field(10.0, gt=0)
    heartbeat_warning_after: float = Field(120.0, gt=0)
    project_id: str | None = Field(None, min_length=1, description=(
        "the project the session goes into (TINKER_PROJECT_ID); None: the account's default"))
    display_name: str | None = Field(None, description="a human-readable name of the session, for display and search")
    billing_pause: BillingPauseSettings = BillingPauseSettings()
    pools: Pools = Pools()
    circuit_breaker: CircuitBreakerSettings | None = None
    telemetry: TelemetrySettings = TelemetrySettings()
    protocol: Protocol = Field("auto", description=(
        "the wire protocol: 'auto' (ask the server), '0.38' (today's service) or '0.6.3' (older servers)"))
    sdk_version: str | None = Field(None, min_length=1, description=(
        "the SDK version claimed to the server (client/config, create_session, x-sdk-version); None: the "
        "official release whose protocol is spoken (0.38.0 or 0.6.3)"))
    min_config_refresh_interval: float = Field(10.0, gt=0, description=(
        "shortest wait between two client/dynamic_config refreshes, whatever interval the server asks for"))

    if not TYPE_CHECKING:  # hidden from mypy, so that the pydantic plugin still types Config(...) calls
        def __init__(self, **values: Any) -> None:
            super().__init__(**_clean_secrets(values))

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        return super().model_validate(_clean_secrets(obj) if isinstance(obj, Mapping) else obj, *args, **kwargs)

    @field_validator("api_key", "cf_access_client_secret", mode="before")
    @classmethod
    def _strip_secret(cls, value: object, info: ValidationInfo) -> object:
        # Already done before validation; this catches paths that bypass it (model_validate_json, ...).
        return _clean_secret(info.field_name or "api_key", value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("console_url")
    @classmethod
    def _check_console_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"console_url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("tags", mode="before")
    @classmethod
    def _dedupe_tags(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, Iterable):
            return _unique(str(tag).strip() for tag in value)
        return value

    @field_validator("default_headers", mode="before")
    @classmethod
    def _headers_from_mapping(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return tuple((str(k), str(v)) for k, v in value.items())
        return value

    @field_validator("default_query", mode="before")
    @classmethod
    def _query_from_mapping(cls, value: object) -> object:
        # As the official SDK's default_query: a list value repeats the parameter, booleans are true/false
        # and None leaves the parameter out.
        if isinstance(value, Mapping):
            return tuple((str(name), _query_text(item)) for name, given in value.items()
                         for item in (given if isinstance(given, list | tuple) else [given]) if item is not None)
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a config: ``overrides`` (``None`` values count as not given) > ``env`` > defaults.

        ``env`` defaults to ``os.environ``; tests pass a plain dict. When neither ``api_key`` nor
        ``TINKER_API_KEY`` nor ``TINKER_CREDENTIAL_CMD`` gives a credential, the stored default key of
        ``$HOME/.tinker/credentials.json`` is read (a given ``env`` without ``HOME`` has none); a file that
        cannot be read raises :class:`~tinker_actors.auth.errors.StoredCredentialsError`.
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field, var in _ENV_VARS.items():
            if source.get(var):
                values[field] = source[var]
        if "api_key" in values:
            values["api_key_origin"] = "environment"
        if overrides.get("api_key") is not None:
            values["api_key_origin"] = "argument"
        elif "api_key" not in values and "credential_cmd" not in values:
            stored = _stored_default_key(source if env is not None else None)
            if stored is not None:
                values["api_key"], values["api_key_origin"] = stored, "stored"
        if "TINKER_TAGS" in source:
            values["tags"] = source["TINKER_TAGS"]
        if "TINKER_TELEMETRY" in source:
            values["telemetry_enabled"] = source["TINKER_TELEMETRY"].strip().lower() in _TRUTHY
        level = source.get("TINKER_LOG", "").strip().lower()
        if level in _LOG_LEVELS:
            values["log_level"] = level
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)

    def replace(self, **overrides: Any) -> Config:
        """A validated copy with some fields changed (``None`` is a real value here)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(overrides)
        if "api_key" in overrides and "api_key_origin" not in overrides:
            values["api_key_origin"] = "argument"
        return type(self).model_validate(values)

    def require_api_key(self) -> str:
        """The API key's value, or :class:`MissingApiKeyError` saying how to set it, or
        :class:`InvalidApiKeyError` when it is not a ``tml-`` key or a JWT."""
        if self.api_key is None or not self.api_key.get_secret_value():
            raise MissingApiKeyError()
        return check_api_key_format(self.api_key.get_secret_value(), _ORIGIN_LABELS[self.api_key_origin])

    def __getstate__(self) -> dict[Any, Any]:
        # A pickle is bytes anyone may log, store or ship to a cluster: it never holds the secrets. The
        # process that unpickles gets a Config without them and supplies its own (``TINKER_API_KEY``, or
        # ``config.replace(api_key=...)``), as an unpickled SamplingClient does.
        state = dict(super().__getstate__())
        fields = dict(state["__dict__"])
        fields["api_key"] = None
        fields["cf_access_client_secret"] = None
        fields["credential_cmd"] = None
        state["__dict__"] = fields
        return state

    def secret_values(self) -> tuple[str, ...]:
        """Every secret this config holds, for redaction of free text (error bodies, log lines)."""
        secrets = (self.api_key, self.cf_access_client_secret)
        return tuple(s.get_secret_value() for s in secrets if s is not None and s.get_secret_value())


def _stored_default_key(env: Mapping[str, str] | None) -> str | None:
    """The stored default key (``$HOME/.tinker/credentials.json``), or None. ``env`` None: this process's home."""
    if env is None:
        path = default_credentials_path()
    elif env.get("HOME"):
        path = default_credentials_path(env["HOME"])
    else:
        return None
    entry = CredentialsFile(path).default_entry()
    return entry[1].key.get_secret_value() if entry is not None else None


def _query_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unique(tags: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tag for tag in tags if tag))
