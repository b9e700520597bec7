"""The HTTP layer: one call in, one validated answer or one typed error out.

:class:`HttpLayer` owns the httpx clients (one set per :class:`Purpose`), the retry loop, the
headers and the per-endpoint statistics. It knows nothing about Tinker's wire types: request bodies
arrive already encoded (``bytes``) and answers are validated into whatever pydantic model the caller
names.

Paths are given relative to the configured base URL, as ``"/api/v1/<endpoint>"`` (a missing leading
slash is tolerated); a base URL with a path prefix keeps its prefix
(``https://host/services/tinker-prod`` + ``/api/v1/asample``).

Retries (per call, see :class:`~tinker_actors.config.RetryPolicy`): connection errors, timeouts and
408 / 409 / 429 / 5xx answers, unless the server says ``x-should-retry: false`` (``true`` forces a
retry of any status). The wait is the server's ``retry-after-ms`` / ``Retry-After`` when it is
within ``(0, max_retry_after]``, else the jittered exponential backoff. One ``X-Idempotency-Key`` is
kept across the retries of a call; ``x-stainless-retry-count`` says which attempt this is. The
policy's ``deadline`` bounds the whole call: no attempt runs past it, and no wait that would end
past it is started; the last error is raised instead.

Billing: a 402 answer pauses the call (it is sent again with backoff, without using up its retries or its
deadline) for as long as :mod:`tinker_actors.http.billing` allows, then raises
:class:`~tinker_actors.errors.BillingError`; ``billing_pause=False`` (heartbeats) and telemetry raise it at once.

Redirects: httpx follows none; the layer follows a redirect itself only within the same origin
(scheme, host, port), at most ``MAX_REDIRECTS`` hops, and refuses one to another origin with
:class:`~tinker_actors.errors.CrossOriginRedirectError` before anything is sent there (see
:mod:`tinker_actors.http.redirects`): the API key never leaves the API.

Credentials: every attempt sends the token its :class:`~tinker_actors.auth.tokens.TokenHolder` holds
(``X-API-Key``): the API key as it is, or the short-lived token a keeper exchanged it for. A token near
expiry is refreshed before the attempt; an answer ``401`` with ``WWW-Authenticate: ... error="invalid_token"``
is sent once more with a replacement token (not counted as a retry), when the holder can renew it.

Every failure is an error of :mod:`tinker_actors.errors`; error texts and logs never contain the
API key (header values are redacted by name, bodies by value), and the request and response an
error keeps are redacted copies (:mod:`tinker_actors.http.redaction`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, overload

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from tinker_actors.auth.errors import CredentialError
from tinker_actors.auth.tokens import TokenHolder
from tinker_actors.config import Config, RetryPolicy
from tinker_actors.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    BillingError,
    ClientStoppedError,
    CrossOriginRedirectError,
    error_for_status,
)
from tinker_actors.http.billing import BillingPause
from tinker_actors.http.breaker import CircuitBreaker
from tinker_actors.http.headers import API_KEY, IDEMPOTENCY_KEY, RETRY_COUNT, call_headers, default_headers
from tinker_actors.http.pools import ClientPools, Purpose
from tinker_actors.http.redaction import redacted_request, redacted_response
from tinker_actors.http.redirects import MAX_REDIRECTS, origin_of, same_origin
from tinker_actors.http.response import _NOT_DECODED, HttpResponse
from tinker_actors.http.retry import retry_after_seconds, should_retry_status
from tinker_actors.http.stats import EndpointStats, HttpStats
from tinker_actors.logs import level_enabled, redact_headers, redact_text
from tinker_actors.waits import StallWatch, WatchSettings

__all__ = ["HttpLayer"]

M = TypeVar("M", bound=BaseModel)

QueryParams = Mapping[str, str | int | float | bool]

_EXCERPT_CHARS = 500
_NO_STATUSES: frozenset[int] = frozenset()


class _Failed:
    """One failed attempt: the error to raise if we stop here, and what the retry loop needs."""

    __slots__ = ("error", "headers", "retryable")

    def __init__(self, error: APIError, retryable: bool, headers: httpx.Headers | None = None) -> None:
        self.error = error
        self.retryable = retryable
        self.headers = headers  # of a status answer, for Retry-After


class HttpLayer:
    """Async HTTP for one :class:`Config`. Use it from a single event loop; close it with :meth:`aclose`.

    ``tokens`` holds the credential every request sends; without it, the config's API key is sent as it is,
    and :class:`~tinker_actors.config.MissingApiKeyError` is raised at construction when there is none.
    """

    def __init__(self, config: Config, *, rng: random.Random | None = None, tokens: TokenHolder | None = None
                 ) -> None:
        self._config = config
        self._tokens = tokens if tokens is not None else TokenHolder.static(config.require_api_key(), "api_key")
        self._pools = ClientPools(config, default_headers(config))
        self._config_secrets = config.secret_values()
        self._base = config.base_url
        self._stats = HttpStats()
        self._breaker_settings = config.circuit_breaker
        self._breakers: dict[str, CircuitBreaker] = {}
        self._rng = rng or random.Random()
        self._closed = False
        self._log = structlog.get_logger("tinker_actors.http")
        # Checked before building any event: unconfigured structlog would print every level.
        self._log_debug = level_enabled(config.log_level, "debug")
        self._log_info = level_enabled(config.log_level, "info")
        self._watch_settings = WatchSettings.from_config(config)
        self._billing = BillingPause(config.billing_pause, repeat_after=config.wait_warnings.repeat_after,
                                     log_enabled=level_enabled(config.log_level, "warning"))
        timeouts = config.timeouts
        self._purpose_timeout: dict[Purpose, float] = {purpose: timeouts.default for purpose in Purpose}
        self._purpose_timeout[Purpose.FUTURES] = timeouts.retrieve_future
        self._purpose_timeout[Purpose.TELEMETRY] = timeouts.telemetry
        self._timeouts: dict[float, httpx.Timeout] = {}
        self._sdk_version: str | None = None

    def announce_sdk_version(self, version: str | None) -> None:
        """Send ``x-sdk-version: version`` (and ``x-sdk-method``) with the requests of public methods from
        now on (``None``: never, as in protocol 0.6.3). Set once, after the protocol is negotiated."""
        self._sdk_version = version

    def __repr__(self) -> str:
        return f"HttpLayer(base_url={self._base!r}, closed={self._closed})"

    @property
    def tokens(self) -> TokenHolder:
        """Where the credential each request sends comes from."""
        return self._tokens

    def use_tokens(self, tokens: TokenHolder) -> None:
        """Send ``tokens``' token from the next attempt on (after the protocol settled on token exchange)."""
        self._tokens = tokens

    @property
    def _secrets(self) -> tuple[str, ...]:
        """Every value error texts must not show: the config's secrets and the credential(s) in use."""
        return self._config_secrets + self._tokens.secrets()

    @property
    def _secret_bytes(self) -> tuple[bytes, ...]:
        return tuple(secret.encode() for secret in self._secrets)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def billing(self) -> BillingPause:
        """The billing incident of this layer: requests paused on 402, and until when (:mod:`.billing`)."""
        return self._billing

    def capacity(self, purpose: Purpose | str) -> int:
        """How many requests of ``purpose`` can be on the wire at once (clients x connections)."""
        return self._pools.limits(Purpose(purpose)).capacity

    def stats(self) -> dict[str, EndpointStats]:
        """Counters and latency percentiles per endpoint (``"asample"``, ``"create_session"``, ...)."""
        return self._stats.snapshot()

    async def __aenter__(self) -> HttpLayer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection. Later calls raise :class:`ClientStoppedError`."""
        self._closed = True
        await self._pools.aclose()

    @overload
    async def request(self, purpose: Purpose | str, method: str, path: str, *, content: bytes | None = None,
                      params: QueryParams | None = None, response_model: type[M],
                      timeout: float | None = None, retry: RetryPolicy | None = None,
                      headers: Mapping[str, str] | None = None,
                      accept_status: frozenset[int] = _NO_STATUSES,
                      endpoint: str | None = None, billing_pause: bool = True,
                      on_pause: Callable[[BillingError], None] | None = None) -> HttpResponse[M]: ...

    @overload
    async def request(self, purpose: Purpose | str, method: str, path: str, *, content: bytes | None = None,
                      params: QueryParams | None = None, response_model: None = None,
                      timeout: float | None = None, retry: RetryPolicy | None = None,
                      headers: Mapping[str, str] | None = None,
                      accept_status: frozenset[int] = _NO_STATUSES,
                      endpoint: str | None = None, billing_pause: bool = True,
                      on_pause: Callable[[BillingError], None] | None = None) -> HttpResponse[Any]: ...

    async def request(self, purpose: Purpose | str, method: str, path: str, *, content: bytes | None = None,
                      params: QueryParams | None = None, response_model: type[BaseModel] | None = None,
                      timeout: float | None = None, retry: RetryPolicy | None = None,
                      headers: Mapping[str, str] | None = None,
                      accept_status: frozenset[int] = _NO_STATUSES,
                      endpoint: str | None = None, billing_pause: bool = True,
                      on_pause: Callable[[BillingError], None] | None = None) -> HttpResponse[Any]:
        """Send one call, retrying per ``retry`` (default: the config's policy).

        ``content`` is the already-encoded JSON body. A 2xx answer is validated into
        ``response_model`` (or decoded as JSON when it is ``None``). Statuses in ``accept_status``
        are returned unvalidated instead of being retried or raised (a 408 poll answer, the 302 of
        the archive call, which is then not followed). ``timeout`` is the
        per-attempt timeout (default by purpose: futures 45 s, telemetry 5 s, else 60 s).
        ``endpoint`` names the call in :meth:`stats` (default ``"<METHOD> <first path segment>"``).
        ``billing_pause``: whether a 402 pauses the call (never for telemetry). ``on_pause`` is told of each
        402 before and after its wait (a caller with its own no-progress clock, the sampler, holds it meanwhile:
        the pause has its own bound and its own announcements).
        """
        if self._closed:
            raise ClientStoppedError("The HTTP layer is closed.")
        purpose = purpose if isinstance(purpose, Purpose) else Purpose(purpose)
        method = method.upper()
        policy = retry if retry is not None else self._config.retry
        url = self._base + path if path.startswith("/") else f"{self._base}/{path}"
        endpoint_name = endpoint or _endpoint_name(method, path)
        counters = self._stats.counters(endpoint_name)
        breaker = self._breaker(endpoint_name)
        sent_headers = call_headers(method, headers, self._sdk_version)
        per_attempt = timeout if timeout is not None else self._purpose_timeout[purpose]
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + policy.deadline if policy.deadline is not None else None
        retries = 0
        replayed = False  # a 401 invalid_token is answered by one replay with a fresh token
        paused = 0  # 402 answers waited out (they count neither as retries nor against the deadline)
        billing_pause = billing_pause and purpose is not Purpose.TELEMETRY
        # A call that may retry may take long: a stall watch announces it (the poller and the sampler, which
        # retry themselves, watch their own waits). At the latest: the deadline, else every attempt left.
        watch = None if not policy.max_retries else StallWatch(
            endpoint_name, self._watch_settings, request_id=sent_headers.get(IDEMPOTENCY_KEY),
            gives_up_at=lambda: deadline if deadline is not None else loop.time() + (
                policy.max_retries - retries) * (per_attempt + max(policy.max_delay, policy.max_retry_after)))
        try:
            while True:
                if retries:
                    sent_headers[RETRY_COUNT] = str(retries)
                client = self._pools.pick(purpose)
                if breaker is not None:
                    breaker.check(endpoint_name, loop.time())
                tokens = self._tokens
                token = tokens.peek() or await _bounded(tokens.fresh(), deadline, "a fresh token")
                sent_headers[API_KEY] = token
                outcome = await self._attempt(client, method, url, content, params, sent_headers, per_attempt,
                                              deadline, loop, accept_status, retries)
                if breaker is not None:
                    breaker.record(not _server_side_failure(outcome), loop.time())
                if isinstance(outcome, httpx.Response):
                    status = outcome.status_code
                    HttpStats.attempt(counters, str(status))
                    data = _NOT_DECODED if status in accept_status else self._decode(outcome, response_model)
                    elapsed = loop.time() - started
                    HttpStats.finished(counters, elapsed, retries, error=False)
                    if paused:
                        self._billing.resumed()
                    return HttpResponse(status, outcome.headers, outcome.content, retries + 1, elapsed, data)
                HttpStats.attempt(counters, _outcome_label(outcome.error))
                if not replayed and tokens.refreshable and _token_refused(outcome):
                    replayed = True
                    await _bounded(tokens.replacement(token), deadline, "a replacement for a refused token")
                    continue
                if billing_pause and isinstance(outcome.error, BillingError):
                    paused += 1
                    if on_pause is not None:
                        on_pause(outcome.error)
                    waited = await self._billing.pause(outcome.error, paused)  # raises once the pause ran out
                    deadline = None if deadline is None else deadline + waited
                    if watch is not None:
                        watch.progress()  # the pause is announced by the billing module, not as a stall
                    if on_pause is not None:
                        on_pause(outcome.error)
                    continue
                if watch is not None:
                    watch.answer(_condition(outcome.error), attempt=retries + 1, attempts=policy.max_retries + 1,
                                 error=outcome.error.message)
                if not outcome.retryable or retries >= policy.max_retries:
                    raise outcome.error
                wait = None
                if outcome.headers is not None:
                    wait = retry_after_seconds(outcome.headers, policy.max_retry_after)
                if wait is None:
                    wait = policy.backoff(retries, self._rng)
                if deadline is not None and loop.time() + wait >= deadline:
                    raise outcome.error
                if self._log_info:
                    self._log.info("http.retry", method=method, path=path, attempt=retries + 1,
                                   wait=round(wait, 3), reason=outcome.error.message)
                await asyncio.sleep(wait)
                retries += 1
        except (APIError, CredentialError):
            HttpStats.finished(counters, loop.time() - started, retries, error=True)
            raise
        finally:
            if watch is not None:
                watch.close()

    def _breaker(self, endpoint: str) -> CircuitBreaker | None:
        settings = self._breaker_settings
        if settings is None:
            return None
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = self._breakers[endpoint] = CircuitBreaker(settings.failure_threshold, settings.reset_timeout)
        return breaker

    def circuit_states(self) -> dict[str, str]:
        """``{endpoint: closed | open | half_open}`` for endpoints with a breaker (none when disabled)."""
        return {name: breaker.state for name, breaker in self._breakers.items()}

    async def _attempt(self, client: httpx.AsyncClient, method: str, url: str, content: bytes | None,
                       params: QueryParams | None, headers: dict[str, str], per_attempt: float,
                       deadline: float | None, loop: asyncio.AbstractEventLoop, accept_status: frozenset[int],
                       retries: int) -> httpx.Response | _Failed:
        """One request on the wire: the answer to hand back (2xx or accepted), or the failure."""
        attempt_started = loop.time()
        try:
            if deadline is None:
                response = await self._send(client, method, url, content, params, headers,
                                            self._timeout(per_attempt), accept_status)
            else:
                # httpx timeouts are per socket operation; asyncio's bounds the attempt as a whole,
                # so a server trickling bytes cannot outlive the deadline either.
                remaining = deadline - attempt_started
                async with asyncio.timeout_at(deadline):
                    response = await self._send(client, method, url, content, params, headers,
                                                self._timeout(min(per_attempt, max(remaining, 0.001))),
                                                accept_status)
        except httpx.TimeoutException as exc:
            return _Failed(self._connection_error(APITimeoutError, "Request timed out", method, url, exc), True)
        except TimeoutError as exc:  # asyncio.timeout_at: the call's deadline passed mid-attempt
            error = APITimeoutError(f"Request timed out: the call's deadline passed ({method} {_path_of(url)})")
            error.__cause__ = exc
            return _Failed(error, False)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return _Failed(self._connection_error(APIConnectionError, "Invalid request", method, url, exc), False)
        except httpx.TransportError as exc:
            return _Failed(self._connection_error(APIConnectionError, "Connection error", method, url, exc), True)
        except httpx.HTTPError as exc:  # undecodable content-encoding, ...
            return _Failed(self._connection_error(APIConnectionError, "HTTP error", method, url, exc), False)
        if isinstance(response, _Failed):
            return response

        status = response.status_code
        if self._log_debug:
            self._log.debug("http.response", method=method, url=str(response.url), status=status,
                            attempt=retries, elapsed=round(loop.time() - attempt_started, 4),
                            headers=redact_headers(response.request.headers.multi_items()))
        if status in accept_status or 200 <= status < 300:
            return response
        return _Failed(self._status_error(response), should_retry_status(status, response.headers),
                       response.headers)

    async def _send(self, client: httpx.AsyncClient, method: str, url: str, content: bytes | None,
                    params: QueryParams | None, headers: dict[str, str], timeout: httpx.Timeout,
                    accept_status: frozenset[int]) -> httpx.Response | _Failed:
        """One request and the same-origin redirects it leads to; a redirect elsewhere is refused unsent.

        httpx follows nothing itself: it would carry ``X-API-Key`` to any origin (it strips only
        ``Authorization``). A status the caller accepts (the archive's 302) is handed back unfollowed.
        """
        response = await client.request(method, url, content=content, params=params, headers=headers,
                                        timeout=timeout, follow_redirects=False)
        hops = 0
        while response.next_request is not None and response.status_code not in accept_status:
            target, response.next_request = response.next_request, None  # it holds the key: keep it nowhere
            if not same_origin(target.url, response.request.url):
                return _Failed(self._redirect_refused(response, target.url), False)
            if hops >= MAX_REDIRECTS:
                return _Failed(error_for_status(
                    response.status_code, f"Too many redirects: more than {MAX_REDIRECTS} from {method} "
                                          f"{_path_of(url)}", response=redacted_response(response, self._secrets)),
                    False)
            hops += 1
            response = await client.send(target, follow_redirects=False)
        response.next_request = None
        return response

    def _redirect_refused(self, response: httpx.Response, target: httpx.URL) -> CrossOriginRedirectError:
        request = response.request
        where = origin_of(target)
        return CrossOriginRedirectError(
            f"Refused a redirect to another origin: {request.method} {_path_of(str(request.url))} answered "
            f"{response.status_code} to {where}; API calls follow redirects only within "
            f"{origin_of(request.url)}, so the API key is never sent elsewhere. If the service moved, "
            f"set base_url to its new address.",
            target_origin=where, response=redacted_response(response, self._secrets),
            status_code=response.status_code)

    def _timeout(self, seconds: float) -> httpx.Timeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = httpx.Timeout(seconds, connect=min(self._config.timeouts.connect, seconds))
            if len(self._timeouts) < 64:  # deadline-clamped values are one-offs; do not hoard them
                self._timeouts[seconds] = timeout
        return timeout

    def _decode(self, response: httpx.Response, response_model: type[BaseModel] | None) -> Any:
        content = response.content
        if response_model is not None:
            try:
                return response_model.model_validate_json(content)
            except ValidationError as exc:
                # Not chained: the pydantic error quotes the input, which could echo a secret.
                raise APIResponseValidationError(
                    self._validation_message(response, response_model, exc),
                    response=redacted_response(response, self._secrets), body=self._safe_body(content)) from None
        if not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise APIResponseValidationError(
                f"Response of {response.request.method} {_path_of(str(response.url))} (status "
                f"{response.status_code}) is not valid JSON: {self._excerpt(content)}",
                response=redacted_response(response, self._secrets), body=self._safe_body(content)) from None

    def _validation_message(self, response: httpx.Response, model: type[BaseModel], exc: ValidationError) -> str:
        where = f"{response.request.method} {_path_of(str(response.url))} (status {response.status_code})"
        problems = exc.errors(include_input=False, include_url=False)
        if any(problem["type"] == "json_invalid" for problem in problems):
            return f"Response of {where} is not valid JSON: {self._excerpt(response.content)}"
        details = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '<root>'}: {problem['msg']}"
            for problem in problems[:5])
        return f"Response of {where} does not match {model.__name__}: {details}"

    def _status_error(self, response: httpx.Response) -> APIError:
        content = response.content
        excerpt = self._excerpt(content) if content else "(empty body)"
        return error_for_status(response.status_code, f"Error code: {response.status_code} - {excerpt}",
                                response=redacted_response(response, self._secrets), body=self._safe_body(content))

    def _excerpt(self, content: bytes) -> str:
        text = content[: _EXCERPT_CHARS * 4].decode("utf-8", "replace")
        text = redact_text(text, self._secrets)
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."

    def _safe_body(self, content: bytes) -> object:
        """The body for an error's ``.body``: parsed JSON, or redacted text if it holds a secret."""
        if any(secret in content for secret in self._secret_bytes):
            return redact_text(content.decode("utf-8", "replace"), self._secrets)
        try:
            return json.loads(content) if content else None
        except ValueError:
            return content.decode("utf-8", "replace")

    def _connection_error(self, cls: type[APIConnectionError], what: str, method: str, url: str,
                          exc: httpx.HTTPError | httpx.InvalidURL) -> APIConnectionError:
        detail = redact_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, self._secrets)
        error = cls(f"{what} ({method} {_path_of(url)}): {detail}")
        error.request = redacted_request(_request_of(exc), self._secrets)
        with contextlib.suppress(Exception):  # the chained httpx error carries the request too
            exc.request = error.request  # type: ignore[union-attr]
        error.__cause__ = exc
        return error


async def _bounded(wait: Coroutine[Any, Any, str], deadline: float | None, what: str) -> str:
    """``await wait`` within the call's deadline (an :class:`APITimeoutError` past it)."""
    if deadline is None:
        return await wait
    try:
        async with asyncio.timeout_at(deadline):
            return await wait
    except TimeoutError:
        raise APITimeoutError(f"Request timed out: the call's deadline passed while waiting for {what}") from None


def _token_refused(outcome: _Failed) -> bool:
    """Whether the server refused the token itself (RFC 6750 ``invalid_token``): a fresh one may pass."""
    error = outcome.error
    return getattr(error, "status_code", 0) == 401 and outcome.headers is not None \
        and 'error="invalid_token"' in outcome.headers.get("www-authenticate", "")


def _endpoint_name(method: str, path: str) -> str:
    """A low-cardinality name: ids further down the path (run ids, checkpoint names) are dropped."""
    route = path.split("?", 1)[0].lstrip("/")
    if route.startswith("api/v1/"):
        route = route[7:]
    return f"{method} {route.split('/', 1)[0]}"


def _path_of(url: str) -> str:
    """The URL without scheme and host, for messages (the base URL is in the config anyway)."""
    parsed = httpx.URL(url)
    return parsed.raw_path.decode("ascii", "replace")


def _outcome_label(error: APIError) -> str:
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status:
        return str(status)
    return "timeout" if isinstance(error, APITimeoutError) else "connection_error"


def _condition(error: APIError) -> str:
    """How a failed attempt reads in a stall warning (``HTTP 503``, ``timeout``, ``connection error``)."""
    label = _outcome_label(error)
    return f"HTTP {label}" if label.isdigit() else label.replace("_", " ")


def _request_of(exc: BaseException) -> httpx.Request | None:
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:  # httpx raises when the request was never attached
        return None
    return request if isinstance(request, httpx.Request) else None


def _server_side_failure(outcome: httpx.Response | _Failed) -> bool:
    """What trips a circuit: the server unreachable or failing (connection errors, timeouts, 5xx)."""
    if isinstance(outcome, httpx.Response):
        return outcome.status_code >= 500
    error = outcome.error
    return isinstance(error, APIConnectionError) or getattr(error, "status_code", 0) >= 500
