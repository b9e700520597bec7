"""TokenKeeper: one actor per (base URL, credential) keeps the token every request of that credential sends.

::

    root supervisor
    └── token_keepers (one_for_one)
        └── tokens-<digest>*   TokenKeeper per (base URL, credential source, exchange or not), transient

A keeper has one of two jobs:

* **exchange** (the server's ``client/config`` says ``pjwt_auth_enabled``): trade the credential at
  ``POST /api/v1/auth/token`` for a short-lived JWT, and trade it again at about half its lifetime;
* **command** (no exchange, the credential comes from ``TINKER_CREDENTIAL_CMD``): run the command, and run
  it again at about half the lifetime of what it printed, when that is a JWT.

Either way it publishes each token into its :class:`~tinker_actors.auth.tokens.TokenHolder`, which the HTTP
layers of every ServiceClient with that credential read (no actor round trip per request). A request that
finds the token near expiry, or that the server answered ``401 invalid_token``, asks the keeper
(:class:`Refresh`): the keeper runs at most one exchange at a time, and ignores requests that a newer token
already answers, so concurrent rejections of one token cost one exchange. The network call (and the command)
run in the IoLoop; the actor only starts them and hears how they ended (:class:`Fetched`).

A failed refresh keeps the live token in use until it expires and is tried again after a delay
(``Config.auth.retry_delay``, shorter for short-lived tokens); a credential the server refuses becomes an
:class:`~tinker_actors.errors.AuthenticationError` that requests get once no live token is left. A keeper
whose ServiceClients are all gone stops; a crashed one is restarted by its supervisor and picks up from the
holder (which outlives it).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from supervisors import ChildAlreadyExists, ChildSpec, ExitReason, Restart, Strategy, SupervisedActor, Supervisor
from supervisors.timers import Timer
from tinker_actors.auth.api import AUTH_TOKEN_PATH, exchange_token
from tinker_actors.auth.errors import CredentialError
from tinker_actors.auth.sources import CredentialSource
from tinker_actors.auth.tokens import TokenHolder, token_timing
from tinker_actors.config import Config
from tinker_actors.errors import APIStatusError, AuthenticationError, PermissionDeniedError
from tinker_actors.http import HttpLayer
from tinker_actors.logs import level_enabled
from tinker_actors.runtime import Runtime
from tinker_actors.runtime.ioloop import Handle, Outcome
from tinker_actors.runtime.slots import register_slot

__all__ = ["SLOT", "Attach", "Fetched", "Refresh", "Release", "TokenKeeper", "attach_keeper", "keeper_name"]

log = structlog.get_logger("tinker_actors.auth")

SLOT = "token_keepers"
_MIN_RETRY = 0.2  # seconds: the shortest wait before a failed refresh is tried again


# ---- messages -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Attach:
    """Ask: ``user`` (a ServiceClient) sends this keeper's tokens from now on. Answers the TokenHolder."""

    user: object


@dataclass(frozen=True, slots=True)
class Release:
    """``user`` no longer sends this keeper's tokens (its ServiceClient closed)."""

    user: object


@dataclass(frozen=True, slots=True)
class Refresh:
    """A fresh token is wanted: ``refused`` is the token the server answered ``401 invalid_token`` to, or None
    when the current one is near expiry. (Sent from request code through the holder; also a timer tick.)"""

    refused: str | None = field(default=None, repr=False)
    scheduled: int | None = None
    """The timer's number, for a timer tick (a tick of an older timer is ignored)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetch ended: ``outcome`` holds the token (never shown) or the error; ``sent_at`` is when it started."""

    outcome: Outcome[str] = field(repr=False)
    sent_at: float


@dataclass(frozen=True, slots=True)
class _StopIfUnused:
    """Stop now if no ServiceClient uses this keeper (queued behind any Attach already sent)."""


# ---- the actor ------------------------------------------------------------------------------------

class _Stopping(Exception):
    """This keeper is stopping (nobody used it): attach to its successor."""


class TokenKeeper(SupervisedActor):
    """Keeps the token of one credential fresh (see the module docstring)."""

    expected_errors = (_Stopping,)  # answered to the asker, not a crash

    def __init__(self, runtime: Runtime, config: Config, source: CredentialSource, exchange: bool,
                 holder: TokenHolder) -> None:
        super().__init__()
        self._runtime = runtime
        self._config = config
        self._source = source
        self._exchange = exchange
        self._holder = holder
        self._http: HttpLayer | None = None
        self._credential: TokenHolder | None = None
        self._fetching: Handle | None = None
        self._timer: Timer | None = None
        self._timer_seq = 0
        self._failing = False
        self._stopping = False
        self._rng = random.Random()
        self._log_warnings = level_enabled(config.log_level, "warning")

    def __repr__(self) -> str:
        return f"TokenKeeper({self._source.label!r}, exchange={self._exchange})"

    def on_init(self) -> None:
        if self._exchange:
            # The credential the exchange presents: the key, or the command's latest output.
            static = self._source.static_value()
            self._credential = TokenHolder.static(static, self._source.label) if static is not None \
                else TokenHolder(self._source.label)
            self._http = HttpLayer(self._config, tokens=self._credential)
        actor = self.actor_ref
        self._holder.bind(lambda refused: actor.tell(Refresh(refused)))
        token = self._holder.current()
        if token is None or time.monotonic() >= token.timing.stale_at or self._holder.wanted():
            self._fetch()
        else:  # restarted: the holder kept the token, and when it is due
            self._schedule(token.timing.refresh_at - time.monotonic())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Refresh):
            self._refresh(message)
        elif isinstance(message, Fetched):
            self._fetched(message)
        elif isinstance(message, Attach):
            return self._attach(message.user)
        elif isinstance(message, Release):
            self._holder.detach(message.user)
            self.actor_ref.tell(_StopIfUnused())
        elif isinstance(message, _StopIfUnused) and not self._holder.in_use():
            self._retire()
        return None

    def on_terminate(self, reason: ExitReason) -> None:
        self._holder.bind(None)
        if self._timer is not None:
            self._timer.cancel()
        if self._fetching is not None:
            self._fetching.cancel()
        if self._http is not None:
            with contextlib.suppress(Exception):  # a stopping IoLoop takes the connections with it
                self._runtime.ioloop.submit(self._http.aclose())

    # ---- handlers ---------------------------------------------------------------------------------

    def _attach(self, user: object) -> TokenHolder:
        if self._stopping:
            raise _Stopping()  # the caller starts a new keeper once this one is gone
        self._holder.attach(user)
        token = self._holder.current()
        if token is None or time.monotonic() >= token.timing.stale_at:
            self._holder.forget_failure()  # a new client deserves a fresh try, not an old failure
            self._fetch()
        return self._holder

    def _refresh(self, message: Refresh) -> None:
        if message.scheduled is not None:
            if message.scheduled != self._timer_seq:
                return  # an older timer
            self._timer = None
            if not self._holder.in_use():
                self._retire()  # nobody left to refresh for
                return
            self._fetch()
            return
        token = self._holder.current()
        if message.refused is not None:
            if token is not None and token.value != message.refused:
                return  # a newer token already answers it
        elif token is not None and time.monotonic() < token.timing.stale_at:
            return  # refreshed since it was asked
        self._fetch()

    def _fetch(self) -> None:
        if self._fetching is not None:
            return  # one at a time: whoever asked meanwhile gets this one's token
        sent_at = time.monotonic()
        try:
            self._fetching = self._runtime.ioloop.submit_and_tell(
                self._fetch_token(), self.actor_ref, lambda outcome: Fetched(outcome, sent_at))
        except Exception as error:  # the IoLoop is stopping: so is this keeper
            self._holder.fail(error, self._config.auth.retry_delay)

    async def _fetch_token(self) -> str:
        """In the IoLoop: the command's output, or a JWT for the credential."""
        credential = await self._source.credential()
        if self._http is None:
            return credential
        if self._credential is not None and self._source.is_command:
            self._credential.publish(credential, token_timing(credential, time.monotonic(), refresh_margin=0.0))
        return await exchange_token(self._http)

    def _fetched(self, message: Fetched) -> None:
        self._fetching = None
        outcome = message.outcome
        if outcome.ok and outcome.value is not None:
            timing = token_timing(outcome.value, message.sent_at, refresh_margin=self._config.auth.refresh_margin,
                                  rng=self._rng)
            self._holder.publish(outcome.value, timing)
            if self._failing and self._log_warnings:
                log.warning("auth.refresh_recovered", source=self._source.label)
            self._failing = False
            self._schedule(timing.refresh_at - time.monotonic())
            return
        if outcome.cancelled:
            return
        error = self._explain(outcome.error)
        delay = self._retry_delay()
        if self._log_warnings and not self._failing:
            log.warning("auth.refresh_failed", source=self._source.label, retry_in=round(delay, 2),
                        error=str(error))
        self._failing = True
        self._holder.fail(error, delay)
        self._schedule(delay)

    # ---- helpers ----------------------------------------------------------------------------------

    def _retire(self) -> None:
        self._stopping = True
        self._holder.bind(None)
        self.stop()  # queued: messages already sent are handled first (an Attach among them is refused)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay == float("inf"):
            return  # a key that never expires: nothing to refresh
        self._timer_seq += 1
        self._timer = self.send_after(max(delay, 0.0), Refresh(scheduled=self._timer_seq))

    def _retry_delay(self) -> float:
        """Shorter for short-lived tokens, and before the live token expires (so it can be replaced in time)."""
        token = self._holder.current()
        life = token.timing.lifetime if token is not None else None
        delay = self._config.auth.retry_delay
        if life:
            delay = min(delay, max(_MIN_RETRY, life / 10))
        if token is not None:
            left = token.timing.expires_at - time.monotonic()
            if 0 < left < float("inf"):
                delay = min(delay, max(_MIN_RETRY, left / 2))
        return delay

    def _explain(self, error: BaseException | None) -> BaseException:
        """The error requests get: a refused credential says so, and where it came from."""
        if isinstance(error, AuthenticationError | PermissionDeniedError):
            status = error.status_code
            return AuthenticationError(
                f"The server refused the credential from {self._source.label} when exchanging it for a token "
                f"(POST {AUTH_TOKEN_PATH}, HTTP {status}): {error.message}. Check the credential, or log in "
                "again (`tinker-actors auth login`).", response=error.response, body=error.body,
                status_code=status)
        if isinstance(error, APIStatusError | CredentialError):
            return error
        if error is None:
            return CredentialError(f"no token for the credential from {self._source.label}")
        return error


# ---- the slot and the way in ----------------------------------------------------------------------

def _slot_spec(runtime: Runtime) -> ChildSpec:
    return Supervisor.child_spec(SLOT, (), strategy=Strategy.ONE_FOR_ONE, max_restarts=10, max_seconds=10.0,
                                 restart=Restart.PERMANENT, shutdown=10.0)


register_slot(SLOT, _slot_spec)


def keeper_name(base_url: str, source: CredentialSource, exchange: bool) -> str:
    """The child id of the keeper of one (base URL, credential, job): a digest, never the credential."""
    digest = hashlib.sha256(f"{base_url}\0{source.fingerprint}\0{exchange}".encode()).hexdigest()
    return f"tokens-{digest[:16]}"


def attach_keeper(runtime: Runtime, config: Config, source: CredentialSource, *, exchange: bool,
                  user: object, timeout: float = 10.0) -> TokenHolder:
    """The holder of the keeper of (``config.base_url``, ``source``, ``exchange``), started if needed, with
    ``user`` attached (release it with :func:`release_keeper`). Runs in a user's thread, never an actor's."""
    keepers = runtime.root.supervisor(SLOT)
    name = keeper_name(config.base_url, source, exchange)
    wait_limit = (config.retry.deadline or 120.0) + config.auth.credential_cmd_timeout + 10.0
    last: Exception | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # a keeper found stopping (its last user just left) is started afresh
        holder = TokenHolder(source.label, wait_limit=wait_limit)
        spec = ChildSpec(name, partial(TokenKeeper.start, runtime, config, source, exchange, holder),
                         restart=Restart.TRANSIENT, shutdown=5.0)
        with contextlib.suppress(ChildAlreadyExists):
            keepers.start_child(spec, timeout=timeout)
        try:
            attached: TokenHolder = keepers.child(name).ask(Attach(user), timeout=timeout)
            return attached
        except Exception as error:
            last = error
            time.sleep(0.02)
    raise CredentialError(f"could not start the token keeper for the credential from {source.label}") from last


def release_keeper(runtime: Runtime, config: Config, source: CredentialSource, *, exchange: bool,
                   user: object) -> None:
    """``user`` no longer uses that keeper; it stops when nobody does. Never raises."""
    with contextlib.suppress(Exception):
        runtime.root.supervisor(SLOT).child(keeper_name(config.base_url, source, exchange)).tell(Release(user))

