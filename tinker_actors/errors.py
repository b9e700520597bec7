"""The error tree.

The names of the official SDK are kept (``TinkerError``, ``APIError``, ``APIStatusError`` and its
per-status subclasses, ``APIConnectionError``, ``APITimeoutError``, ``APIResponseValidationError``,
``RequestFailedError``) so that ported code keeps its ``except`` clauses. Every error also says

* ``category``: who is at fault, :class:`ErrorCategory` ``user`` / ``server`` / ``unknown``;
* ``retryable``: whether trying the same call again could succeed.

On top of the official names come the errors an actor-based client needs: an input rejected before
anything goes on the wire (:class:`InvalidInputError`, also a ``ValueError`` like the official SDK's
checks), a client that was stopped (:class:`ClientStoppedError`), an actor that crashed
(:class:`ActorCrashedError`), a wait that can make no progress (:class:`NoProgressError`) and a caller's
own deadline (:class:`TinkerTimeoutError`, also a ``TimeoutError``).

Messages never contain secrets: the HTTP layer builds them from status codes and (redacted) bodies only,
and the ``request`` / ``response`` an error keeps are redacted copies (credential headers, and any secret
echoed in a header value or the body, replaced; redirect history too), so pickling or logging an error
is safe.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "ActorCrashedError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ClientStoppedError",
    "ConflictError",
    "CrashedBeforeSendError",
    "CrossOriginRedirectError",
    "ErrorCategory",
    "FutureExpiredError",
    "InternalServerError",
    "InvalidInputError",
    "NoProgressError",
    "NotFoundError",
    "NotSentError",
    "PartialBatchError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestErrorCategory",
    "RequestFailedError",
    "TinkerError",
    "TinkerTimeoutError",
    "UnknownLossInputKeyError",
    "UnprocessableEntityError",
    "UnsupportedFeatureError",
    "error_for_status",
    "find_user_error",
    "is_user_error",
]


class ErrorCategory(StrEnum):
    """Who is at fault. The values are the wire's (``{"error": ..., "category": "user"}``)."""

    UNKNOWN = "unknown"
    SERVER = "server"
    USER = "user"

    # The official SDK spells its members Unknown / Server / User; keep those names working.
    Unknown = "unknown"
    Server = "server"
    User = "user"

    @classmethod
    def parse(cls, value: object) -> ErrorCategory:
        """Read a wire category; anything unrecognised is ``unknown`` (as the official SDK does)."""
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN


RequestErrorCategory = ErrorCategory  # the official SDK's name for the same enum


class TinkerError(Exception):
    """Base of every error this SDK raises."""

    default_category: ErrorCategory = ErrorCategory.UNKNOWN
    default_retryable: bool = False

    def __init__(self, message: str = "", *, category: ErrorCategory | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category: ErrorCategory = category if category is not None else self.default_category
        self.retryable: bool = retryable if retryable is not None else self.default_retryable

    def __str__(self) -> str:
        return self.message


class InvalidInputError(TinkerError, ValueError):
    """Bad input caught before anything went on the wire. Never retryable; the caller must fix it."""

    default_category = ErrorCategory.USER


class UnsupportedFeatureError(InvalidInputError):
    """A setting of the official SDK 0.38 that tinker-actors does not implement yet was given a value that asks
    for it. Refused when the request is built, before anything goes on the wire, rather than sent or dropped;
    ``feature`` names the field (``"SampleRequest.topk_sample_logprobs"``). The settings concerned are listed
    in ``tinker_actors.types.unsupported``."""

    def __init__(self, message: str = "", *, feature: str = "", category: ErrorCategory | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, category=category, retryable=retryable)
        self.feature = feature


class UnknownLossInputKeyError(InvalidInputError, KeyError):
    """A plain list was given for a ``loss_fn_inputs`` key whose dtype cannot be inferred."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class APIError(TinkerError):
    """An error that involved the HTTP API."""

    def __init__(self, message: str, request: httpx.Request | None = None, *, body: object | None = None,
                 category: ErrorCategory | None = None, retryable: bool | None = None) -> None:
        super().__init__(message, category=category, retryable=retryable)
        self.request = request
        self.body = body


class APIResponseValidationError(APIError):
    """The server answered, but the body was not JSON or did not match the expected schema."""

    default_category = ErrorCategory.SERVER

    def __init__(self, message: str = "Data returned by API invalid for expected schema.", *,
                 response: httpx.Response | None = None, body: object | None = None,
                 status_code: int | None = None) -> None:
        request = response.request if response is not None else None
        super().__init__(message, request, body=body)
        self.response = response
        self.status_code = status_code if status_code is not None else (
            response.status_code if response is not None else 0)


class APIStatusError(APIError):
    """A non-2xx answer that was not retried away (or not retryable)."""

    default_category = ErrorCategory.UNKNOWN

    def __init__(self, message: str, *, response: httpx.Response | None = None, body: object | None = None,
                 status_code: int | None = None, category: ErrorCategory | None = None,
                 retryable: bool | None = None) -> None:
        request = response.request if response is not None else None
        code = status_code if status_code is not None else (response.status_code if response is not None else 0)
        if category is None:
            category = _category_for_status(code)
        if retryable is None:
            retryable = is_retryable_status(code)
        super().__init__(message, request, body=body, category=category, retryable=retryable)
        self.response = response
        self.status_code = code


class BadRequestError(APIStatusError):
    """HTTP 400."""

    status_code: int = 400  # as in the official SDK; an instance carries the status it got


class AuthenticationError(APIStatusError):
    """HTTP 401."""

    status_code: int = 401  # as in the official SDK; an instance carries the status it got


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""

    status_code: int = 403  # as in the official SDK; an instance carries the status it got


class NotFoundError(APIStatusError):
    """HTTP 404."""

    status_code: int = 404  # as in the official SDK; an instance carries the status it got


class BillingError(APIStatusError):
    """HTTP 402: the account cannot pay for the request (out of credit, no billing set up). Requests that get
    it pause and retry for a while (:mod:`tinker_actors.http.billing`); this is raised when the pause ran out
    (or the call does not pause). Category ``user``: the account's to fix, not the server's."""

    status_code: int = 402  # as the other status errors; an instance carries the status it got


class ConflictError(APIStatusError):
    """HTTP 409."""

    status_code: int = 409  # as in the official SDK; an instance carries the status it got


class UnprocessableEntityError(APIStatusError):
    """HTTP 422."""

    status_code: int = 422  # as in the official SDK; an instance carries the status it got


class RateLimitError(APIStatusError):
    """HTTP 429."""

    status_code: int = 429  # as in the official SDK; an instance carries the status it got


class InternalServerError(APIStatusError):
    """HTTP 500 and above."""


class FutureExpiredError(APIStatusError):
    """HTTP 410 on a poll: the server no longer knows the request (expired or broken promise)."""

    default_category = ErrorCategory.SERVER


class CrossOriginRedirectError(APIStatusError):
    """The API answered with a redirect to another origin (scheme, host or port), which is never followed.

    Following it would send the API key to that origin (httpx drops ``Authorization`` there, but not
    ``X-API-Key``). ``target_origin`` is where the redirect pointed (``scheme://host:port`` only: the
    rest of the URL may hold a signed token). If the service really moved, set ``base_url`` to it.
    """

    def __init__(self, message: str, *, target_origin: str = "", response: httpx.Response | None = None,
                 status_code: int | None = None) -> None:
        super().__init__(message, response=response, status_code=status_code, retryable=False)
        self.target_origin = target_origin


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke, after the retries."""

    default_category = ErrorCategory.SERVER
    default_retryable = True

    def __init__(self, message: str = "Connection error.", request: httpx.Request | None = None, *,
                 body: object | None = None) -> None:
        super().__init__(message, request, body=body)


class APITimeoutError(APIConnectionError):
    """A single HTTP request timed out (after the retries)."""

    def __init__(self, message: str = "Request timed out.", request: httpx.Request | None = None) -> None:
        super().__init__(message, request)


class RequestFailedError(TinkerError):
    """A future resolved to ``{"error": ..., "category": ...}``: the server ran the request and it failed."""

    def __init__(self, message: str, *, request_id: str, category: ErrorCategory | str = ErrorCategory.UNKNOWN,
                 retryable: bool = False) -> None:
        super().__init__(message, category=ErrorCategory.parse(str(category)), retryable=retryable)
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (process pools, Ray workers): the default rebuild misses request_id.
        return (functools.partial(type(self), request_id=self.request_id), (self.message,), self.__dict__)


class NoProgressError(APIConnectionError):
    """A wait gave up: the server was unreachable, or the request made no progress, for too long.

    The official SDK waits forever in these cases; we fail with this error after a configurable limit,
    even when the caller passed no timeout.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class TinkerTimeoutError(TinkerError, TimeoutError):
    """The caller's own deadline passed (``result(timeout=...)``). Only the waiting stopped: the request goes
    on, and a later ``result()`` on the same future returns its outcome."""

    default_category = ErrorCategory.USER
    default_retryable = True


class ClientStoppedError(TinkerError):
    """The client (its actor) was closed or shut down before the call could complete."""

    default_category = ErrorCategory.USER


class NotSentError(ClientStoppedError):
    """The request never left the client (its actor stopped or crashed first); it is safe to send again."""

    default_retryable = True


class ActorCrashedError(TinkerError):
    """The actor serving this call crashed; ``__cause__`` / ``cause`` hold the original exception."""

    default_category = ErrorCategory.UNKNOWN

    def __init__(self, message: str, *, cause: BaseException | None = None, sent: bool | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        # Whether the request had reached the server: None when unknown.
        self.sent = sent
        if cause is not None:
            self.__cause__ = cause


class PartialBatchError(TinkerError):
    """A chunked forward/forward_backward where some chunks ran on the server and others did not (T10).

    The gradients of ``applied_chunks`` are accumulated on the server and cannot be taken back through
    the API: either go on (``optim_step`` then trains on the part that ran) or discard them by loading the
    last checkpoint with its optimizer state. ``outputs`` holds the outputs of the applied chunks (by chunk
    index), ``errors`` the error of every chunk that did not run; a ``NotSentError`` there means that chunk
    never left the client.
    """

    default_category = ErrorCategory.UNKNOWN

    def __init__(self, message: str, *, applied_chunks: list[int], failed_chunks: list[int],
                 outputs: dict[int, Any], errors: dict[int, BaseException]) -> None:
        super().__init__(message)
        self.applied_chunks = applied_chunks
        self.failed_chunks = failed_chunks
        self.outputs = outputs
        self.errors = errors
        first = next(iter(errors.values()), None)
        if first is not None:
            self.__cause__ = first


class CrashedBeforeSendError(NotSentError, ActorCrashedError):
    """The actor crashed before this request left the client: it was never sent (safe to send again).

    Both ``except NotSentError`` and ``except ActorCrashedError`` catch it; ``cause`` is the crash.
    """

    default_retryable = True

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        ActorCrashedError.__init__(self, message, cause=cause, sent=False)
        self.retryable = True
        self.category = ErrorCategory.UNKNOWN


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: FutureExpiredError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def is_retryable_status(status_code: int) -> bool:
    """The statuses worth retrying: 408, 409, 429 and every 5xx (the official SDK's rule)."""
    return status_code in (408, 409, 429) or status_code >= 500


def _category_for_status(status_code: int) -> ErrorCategory:
    if status_code >= 500 or status_code == 410:  # 410: the server lost or expired the request
        return ErrorCategory.SERVER
    if 400 <= status_code < 500 and status_code not in (408, 410, 429):
        return ErrorCategory.USER
    return ErrorCategory.UNKNOWN


def error_for_status(status_code: int, message: str, *, response: httpx.Response | None = None,
                     body: object | None = None, **kwargs: Any) -> APIStatusError:
    """Build the error subclass for an HTTP status (``InternalServerError`` for every 5xx)."""
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = InternalServerError if status_code >= 500 else APIStatusError
    return cls(message, response=response, body=body, status_code=status_code, **kwargs)


# A caller's timeout and a rate limit are 4xx statuses but not the caller's mistake.
_NOT_THE_USERS_STATUSES = (408, 429)


def find_user_error(error: BaseException) -> BaseException | None:
    """The exception that makes ``error`` the user's fault, or None (telemetry's classification).

    Looks at ``error``, then depth first through ``__cause__`` and ``__context__``. One of our errors
    is the user's when its category says ``user`` (a caller's own deadline, :class:`TinkerTimeoutError`,
    is not a mistake). Any other exception is when it carries an integer ``status_code`` in 400-499
    other than 408 and 429: an HTTP library's or a web framework's error, as the official SDK and
    tinkex read them.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TinkerError):
            if current.category is ErrorCategory.USER and not isinstance(current, TinkerTimeoutError):
                return current
        else:
            status = getattr(current, "status_code", None)
            if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 500 \
                    and status not in _NOT_THE_USERS_STATUSES:
                return current
        # Pushed in reverse: the explicit cause is looked at before the implicit context.
        stack.extend(link for link in (current.__context__, current.__cause__) if link is not None)
    return None


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's fault, in itself or through its chain (see :func:`find_user_error`)."""
    return find_user_error(error) is not None
