"""The token a request sends as ``X-API-Key``, kept where every request can read it without asking an actor.

A :class:`TokenHolder` is the notice board between one credential's
:class:`~tinker_actors.auth.keeper.TokenKeeper` (the only writer: it publishes each new token, or the
failure of a refresh) and the HTTP layers that send requests with it (readers). Reading the current
token is an attribute read and a clock read (:meth:`TokenHolder.peek`), so the hot path stays cheap.
When the token is near expiry, a request asks the keeper for a fresh one and waits for the next
publication (:meth:`TokenHolder.fresh`); after a ``401 invalid_token`` it asks for a replacement of the
token that was refused (:meth:`TokenHolder.replacement`). The keeper coalesces such requests: one
exchange serves every request that asked.

A holder with no keeper (an API key used as it is) never changes: :meth:`TokenHolder.static`.

Timing of a JWT (:func:`token_timing`): its life is ``exp - iat`` as the server wrote them, capped by
``exp`` minus this machine's clock (a clock that runs ahead then refreshes early rather than late), counted
from the moment the exchange was sent. It is refreshed in the background at 45-55 % of that life; a
request that finds fewer than ``min(Config.auth.refresh_margin, a quarter of the life)`` seconds left waits
for a fresh one. A failed refresh leaves the live token in use until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import jwt

from tinker_actors.auth.errors import CredentialError

__all__ = ["Token", "TokenHolder", "TokenTiming", "token_timing"]

_FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class TokenTiming:
    """When a token (received at monotonic ``received``) should be refreshed, is stale, expires.

    All times are ``time.monotonic()`` values; ``inf`` for an opaque key, which never expires here."""

    received: float
    refresh_at: float
    stale_at: float
    expires_at: float
    lifetime: float | None = None
    """Seconds the token lives as far as this client counts (None: not a JWT, or one without exp)."""

    @classmethod
    def forever(cls, received: float | None = None) -> TokenTiming:
        now = time.monotonic() if received is None else received
        return cls(now, _FOREVER, _FOREVER, _FOREVER)


def token_timing(token: str, sent_at: float, *, refresh_margin: float, rng: random.Random | None = None,
                 wall_now: float | None = None) -> TokenTiming:
    """The timing of ``token``, obtained by a request sent at monotonic ``sent_at`` (see the module docstring).

    Claims are read with PyJWT without verifying the signature (the client cannot, and need not: it only
    learns when to refresh; the server checks the token)."""
    if not token.startswith("eyJ"):
        return TokenTiming.forever(sent_at)
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return TokenTiming.forever(sent_at)
    expiry, issued = _number(claims.get("exp")), _number(claims.get("iat"))
    if expiry is None:
        return TokenTiming.forever(sent_at)
    # The server's own lifetime is immune to clock skew; exp against our clock is what the server will check.
    candidates = [value for value in (
        expiry - issued if issued is not None else None,
        expiry - (time.time() if wall_now is None else wall_now)) if value is not None and value > 0]
    if not candidates:
        return TokenTiming(sent_at, sent_at, sent_at, sent_at, 0.0)  # already expired: useless at once
    life = min(candidates)
    margin = min(refresh_margin, life / 4)
    return TokenTiming(received=sent_at, refresh_at=sent_at + life * (rng or random).uniform(0.45, 0.55),
                       stale_at=sent_at + life - margin, expires_at=sent_at + life, lifetime=life)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Token:
    """One published token. Its value is never shown in a repr and a Token is never pickled."""

    value: str = field(repr=False)
    generation: int
    timing: TokenTiming

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Token holds a credential and is never pickled")


class _Waiter:
    __slots__ = ("future", "loop", "newer_than")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Token], newer_than: int) -> None:
        self.loop = loop
        self.future = future
        self.newer_than = newer_than


def _resolve(future: asyncio.Future[Token], token: Token | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(token)  # type: ignore[arg-type]


class TokenHolder:
    """The current token of one credential; thread-safe. See the module docstring.

    ``label`` says where the credential comes from (``TINKER_API_KEY``, ``TINKER_CREDENTIAL_CMD``, ...), for
    messages. ``wait_limit`` bounds how long a request waits for its keeper's next token.
    """

    def __init__(self, label: str, *, wait_limit: float = 180.0) -> None:
        self.label = label
        self.wait_limit = wait_limit
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)
        self._token: Token | None = None
        self._previous: str | None = None  # the token before the current one: requests may still carry it
        self._generation = 0
        self._waiters: list[_Waiter] = []
        self._failure: BaseException | None = None
        self._failure_until = 0.0  # monotonic: until then requests do not ask again, they use or raise
        self._asked_for: int | None = None  # the generation a refresh was last asked for (de-duplication)
        self._ask: Callable[[str | None], None] | None = None
        self._users: weakref.WeakSet[Any] = weakref.WeakSet()

    @classmethod
    def static(cls, value: str, label: str) -> TokenHolder:
        """A holder of a credential sent as it is, with no keeper: it never changes."""
        holder = cls(label)
        holder.publish(value, TokenTiming.forever())
        return holder

    def __repr__(self) -> str:
        token = self._token
        return (f"TokenHolder({self.label!r}, generation={token.generation if token else 0}, "
                f"refreshable={self.refreshable})")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a TokenHolder holds a credential and is never pickled")

    # ---- readers (any thread; the async ones in an event loop) -------------------------------------

    @property
    def refreshable(self) -> bool:
        """Whether a keeper keeps this token (then a refused token can be replaced)."""
        return self._ask is not None

    def peek(self) -> str | None:
        """The current token if it is good for a while yet; None if the caller should :meth:`fresh`."""
        token = self._token
        if token is not None and time.monotonic() < token.timing.stale_at:
            return token.value
        return None

    def current(self) -> Token | None:
        return self._token

    def secrets(self) -> tuple[str, ...]:
        """The values an error text must never show: the current token, and the one before it (a request sent
        just before a refresh may get an answer that echoes it)."""
        token, previous = self._token, self._previous
        current = (token.value,) if token is not None else ()
        return (*current, previous) if previous is not None else current

    async def fresh(self) -> str:
        """A token good for a while: the current one, else the next one the keeper publishes. When the
        refresh fails, the current token as long as it is alive; else the refresh's error."""
        loop = asyncio.get_running_loop()
        with self._lock:
            token = self._token
            now = time.monotonic()
            if token is not None and now < token.timing.stale_at:
                return token.value
            if self._ask is None or (self._failure is not None and now < self._failure_until):
                return self._live_or_raise(token, now)
            generation = token.generation if token is not None else 0
            future = self._wait(loop, generation)
            ask = self._asked_for != generation
            self._asked_for = generation
        if ask:
            self._request(None)
        try:
            return (await self._await(future)).value
        except Exception:
            with self._lock:
                return self._live_or_raise(self._token, time.monotonic())

    async def replacement(self, refused: str) -> str:
        """A token other than ``refused`` (which the server answered ``401 invalid_token`` to). Only the
        first of several requests refused with the same token makes the keeper exchange again."""
        loop = asyncio.get_running_loop()
        with self._lock:
            token = self._token
            now = time.monotonic()
            if token is not None and token.value != refused:
                return token.value
            if self._ask is None:
                raise CredentialError(f"the server refused the credential from {self.label} and it cannot be "
                                      "renewed here")
            if token is not None and now < token.timing.expires_at:
                # Refused: no request sends it again, and it is no fallback if the exchange fails.
                timing = token.timing
                self._token = token = Token(token.value, token.generation, TokenTiming(
                    timing.received, min(timing.refresh_at, now), now, now, timing.lifetime))
            generation = token.generation if token is not None else 0
            if self._failure is not None and now < self._failure_until:
                raise self._failure
            future = self._wait(loop, generation)
            ask = self._asked_for != generation
            self._asked_for = generation
        if ask:
            self._request(refused)
        return (await self._await(future)).value

    def first_token(self, timeout: float) -> Token:
        """Block (a user's thread, never an actor or the IoLoop) until a token is published, or raise the
        failure that came instead."""
        deadline = time.monotonic() + timeout
        with self._published:
            while self._token is None or time.monotonic() >= self._token.timing.expires_at:
                if self._failure is not None:
                    raise self._failure
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CredentialError(f"no token for the credential from {self.label} within {timeout:g} s")
                self._published.wait(left)
            return self._token

    # ---- who uses it (ServiceClients) -----------------------------------------------------------------

    def attach(self, user: object) -> None:
        with self._lock:
            self._users.add(user)

    def detach(self, user: object) -> None:
        with self._lock:
            self._users.discard(user)

    def in_use(self) -> bool:
        with self._lock:
            return len(self._users) > 0

    # ---- the keeper's side -----------------------------------------------------------------------------

    def bind(self, ask: Callable[[str | None], None] | None) -> None:
        """``ask(refused)`` tells the keeper a fresh token is wanted (``refused``: the token the server
        refused, or None when the current one is near expiry). None: the keeper is gone."""
        with self._lock:
            self._ask = ask
            self._asked_for = None

    def publish(self, value: str, timing: TokenTiming) -> Token:
        """Make ``value`` the current token and wake every request waiting for it."""
        with self._lock:
            self._generation += 1
            token = Token(value, self._generation, timing)
            if self._token is not None and self._token.value != value:
                self._previous = self._token.value
            self._token = token
            self._failure = None
            self._asked_for = None
            woken = [waiter for waiter in self._waiters if waiter.newer_than < token.generation]
            self._waiters = [waiter for waiter in self._waiters if waiter.newer_than >= token.generation]
            self._published.notify_all()
        for waiter in woken:
            _call_in(waiter.loop, _resolve, waiter.future, token, None)
        return token

    def fail(self, error: BaseException, retry_in: float) -> None:
        """A refresh failed with ``error``; the keeper tries again in ``retry_in`` seconds. Waiting requests
        wake up (and use the live token if there is one); until then, requests do not ask again."""
        with self._lock:
            self._failure = error
            self._failure_until = time.monotonic() + retry_in
            self._asked_for = None
            woken, self._waiters = self._waiters, []
            self._published.notify_all()
        for waiter in woken:
            _call_in(waiter.loop, _resolve, waiter.future, None, error)

    def wanted(self) -> bool:
        """Whether requests are waiting for a token (a restarted keeper refreshes at once then)."""
        with self._lock:
            return bool(self._waiters)

    def forget_failure(self) -> None:
        """A new user arrived: the next refresh is tried now, and its outcome (not an older failure) counts."""
        with self._lock:
            self._failure = None
            self._failure_until = 0.0

    # ---- internals -----------------------------------------------------------------------------------

    def _live_or_raise(self, token: Token | None, now: float) -> str:
        if token is not None and now < token.timing.expires_at:
            return token.value
        if self._failure is not None:
            raise self._failure
        raise CredentialError(f"no valid token for the credential from {self.label}: the last one expired")

    def _wait(self, loop: asyncio.AbstractEventLoop, newer_than: int) -> asyncio.Future[Token]:
        future: asyncio.Future[Token] = loop.create_future()
        self._waiters.append(_Waiter(loop, future, newer_than))
        return future

    async def _await(self, future: asyncio.Future[Token]) -> Token:
        try:
            async with asyncio.timeout(self.wait_limit):
                return await asyncio.shield(future)
        except TimeoutError:
            raise CredentialError(
                f"no fresh token for the credential from {self.label} within {self.wait_limit:g} s") from None
        finally:
            if not future.done():
                with self._lock:
                    self._waiters = [waiter for waiter in self._waiters if waiter.future is not future]
                future.cancel()

    def _request(self, refused: str | None) -> None:
        ask = self._ask
        if ask is None:
            return
        try:
            ask(refused)
        except Exception:  # the keeper is restarting: the new one sees the waiters and refreshes at once
            with self._lock:
                self._asked_for = None


def _call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there any more
        loop.call_soon_threadsafe(fn, *args)

