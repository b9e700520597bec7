"""Short-lived tokens (JWTs) the local service issues for an API key, as ``POST /api/v1/auth/token`` does
on the real service; their verification; and the check of a request's credential (a key or a token).

Tokens are signed with HS256 by PyJWT under a random secret made when the service object is created: the
secret lives only in memory (never in a repr, a log line or a pickle), outlives a :meth:`restart` of the
same service object, and dies with it. Claims: ``sub`` (the user), ``iat`` and ``exp`` (whole seconds;
``exp`` is rounded up, so a token lives at least the configured lifetime), ``jti`` (unique per token),
``iss`` and ``key_id`` (which key it was issued for, so that revoking the key revokes its tokens too),
``org_id`` (:data:`LOCAL_ORG_ID`) and ``email`` (``<user>@localhost``), which 0.38's ``whoami`` reads.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import jwt

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.engine.accounts import Accounts, Identity

__all__ = ["DEFAULT_TOKEN_LIFETIME_S", "JWT_PREFIX", "LOCAL_ORG_ID", "Authenticator", "Credential", "InvalidTokenError",
           "TokenIssuer", "check_token_lifetime"]

DEFAULT_TOKEN_LIFETIME_S = 3600.0
JWT_PREFIX = "eyJ"  # what every JWT starts with (base64 of '{"'): such a credential is a token, not a key
_ALGORITHM = "HS256"
_ISSUER = "tinker-actors-local"
LOCAL_ORG_ID = "local"  # the organization every user of a local service is in


class InvalidTokenError(Exception):
    """A token that is not (or no longer) accepted; the message says why, never shows the token."""


def check_token_lifetime(value: object) -> float:
    """``value`` as a token lifetime in seconds (a finite number above 0), else an InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"a token lifetime is a number of seconds above 0, got {value!r}")
    return float(value)


class TokenIssuer:
    """Issues and verifies the service's JWTs. Thread-safe (the lifetime can change from any thread)."""

    def __init__(self, lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S) -> None:
        self._lifetime_s = check_token_lifetime(lifetime_s)
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)

    def __repr__(self) -> str:  # never the secret
        return f"TokenIssuer(lifetime_s={self.lifetime_s})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a TokenIssuer holds the service's signing secret and cannot be pickled")

    @property
    def lifetime_s(self) -> float:
        """Seconds a new token lives (tokens already issued keep the lifetime they were issued with)."""
        with self._lock:
            return self._lifetime_s

    @lifetime_s.setter
    def lifetime_s(self, value: float) -> None:
        checked = check_token_lifetime(value)
        with self._lock:
            self._lifetime_s = checked

    def issue(self, identity: Identity, *, now: float | None = None, not_after: int | None = None) -> str:
        """A signed token for ``identity``, valid from now for :attr:`lifetime_s` (rounded up to a second),
        and no later than ``not_after`` (the expiry of the token it is exchanged for, if it is one)."""
        issued = time.time() if now is None else now
        expires = math.ceil(issued + self.lifetime_s)
        claims: dict[str, Any] = {
            "sub": identity.user,
            "iat": int(issued),
            "exp": expires if not_after is None else min(expires, not_after),
            "jti": secrets.token_hex(8),
            "iss": _ISSUER,
            "key_id": identity.key_id,
            # what 0.38's RestClient.whoami reads from a token (its organization and email)
            "org_id": LOCAL_ORG_ID,
            "email": f"{identity.user}@localhost",
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> tuple[Identity, int]:
        """The identity a valid token was issued for, and its expiry (``exp``); :class:`InvalidTokenError`
        when it is expired, not signed by this service, or malformed. (Whether its key was revoked is the
        caller's check.)"""
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], issuer=_ISSUER,
                                options={"require": ["sub", "iat", "exp", "iss", "key_id"]})
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("the token's signature is not valid for this service") from None
        except jwt.InvalidTokenError as error:
            raise InvalidTokenError(f"the token is not valid ({type(error).__name__})") from None
        user, key_id, expires = claims["sub"], claims["key_id"], claims["exp"]
        if not isinstance(user, str) or not user or isinstance(key_id, bool) or not isinstance(key_id, int) \
                or isinstance(expires, bool) or not isinstance(expires, int):
            raise InvalidTokenError("the token's claims are not those this service issues")
        return Identity(user, key_id), expires


@dataclass(frozen=True)
class Credential:
    """An accepted credential: whose it is, and, for a token, when it expires (None for a key)."""

    identity: Identity
    token_expires: int | None = None

    @property
    def is_token(self) -> bool:
        return self.token_expires is not None


class Authenticator:
    """Checks a request's ``X-API-Key``: a key (see :class:`Accounts`) or a token this service issued
    (it starts with ``eyJ``, as every JWT does), and counts what it saw. Thread-safe."""

    def __init__(self, accounts: Accounts, tokens: TokenIssuer) -> None:
        self.accounts = accounts
        self.tokens = tokens
        self._lock = threading.Lock()
        self._counts = {"keys_accepted": 0, "tokens_accepted": 0, "refused": 0, "tokens_refused": 0,
                        "tokens_issued": 0}

    def __repr__(self) -> str:
        return f"Authenticator({self.accounts!r}, {self.tokens!r})"

    def check(self, credential: str, *, count_accepted: bool = True) -> Credential | None:
        """The accepted credential, or None when it is not a known, unrevoked key.

        :class:`InvalidTokenError` for a token that is not (or no longer) valid: the caller answers it
        with the ``invalid_token`` signal, which tells a client to get a fresh token and try again.
        A refusal is always counted (it ends the request); ``count_accepted`` False: an acceptance is
        not, as when a credential is checked before the request's body is in and again once it is."""
        if credential.startswith(JWT_PREFIX):
            try:
                identity, expires = self.tokens.verify(credential)
                if self.accounts.is_revoked(identity.key_id):
                    raise InvalidTokenError("the key this token was issued for has been revoked")
            except InvalidTokenError:
                self._count("tokens_refused")
                raise
            if count_accepted:
                self._count("tokens_accepted")
            return Credential(identity, expires)
        identity_of_key = self.accounts.identify(credential)
        if identity_of_key is None:
            self._count("refused")
            return None
        if count_accepted:
            self._count("keys_accepted")
        return Credential(identity_of_key)

    def issue(self, credential: Credential) -> str:
        """A fresh token for an accepted credential (one exchanged for a token expires no later than it)."""
        token = self.tokens.issue(credential.identity, not_after=credential.token_expires)
        self._count("tokens_issued")
        return token

    def counts(self) -> dict[str, int]:
        """Requests seen so far: ``keys_accepted``, ``tokens_accepted``, ``refused`` (unknown keys),
        ``tokens_refused`` (expired, tampered, revoked) and ``tokens_issued``."""
        with self._lock:
            return dict(self._counts)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1
