"""Who a request comes from: the local service's API keys and the user each belongs to.

Three modes, from the simplest:

* no key configured: any non-empty key is accepted and every request is user ``"default"``;
* one key: only that key is accepted, and it is user ``"default"``;
* several keys (a list, a mapping user -> key, or a key file): each key is its own user.

One user is the *admin*, the only one the admin endpoints (``/local/v1/...``) answer in full: user
``"default"`` when there is one (every caller with no key or one key configured, the first key of a
list), else the first user of the mapping or key file. It is the user whose key ``LocalService.api_key``
gives out, so a service's owner is its admin without configuring anything.

A key file holds one ``user key`` pair per line (blank lines and lines starting with ``#`` are
skipped); since it holds secrets, it must not be readable by the group or others (``chmod 600``), as
ssh asks of private keys.

Keys are compared in constant time (``hmac.compare_digest``) and never appear in a repr, a log line or
an error message. A key can be revoked while the service runs (``DELETE /api/v1/auth/apikey/me``); a
revoked key, and every token issued for it, is refused from then on. Keys are known here by a *key id*, a
number made from an HMAC of the key under a random per-service salt, so that tokens, revocations and
``auth/apikey/me`` can name a key without holding it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pydantic import SecretStr

from tinker_actors.errors import InvalidInputError

__all__ = ["DEFAULT_USER", "Accounts", "Identity", "InvalidKeysError", "KeyFileError", "admin_of",
           "configured_keys", "load_key_file", "named_keys"]

DEFAULT_USER = "default"


class InvalidKeysError(InvalidInputError):
    """The keys given to the service are unusable (empty, repeated, a user named twice...)."""


class KeyFileError(InvalidKeysError):
    """A key file that cannot be used: missing, unreadable, readable by others, or a line that is not
    ``user key`` (the message names the file and line, never a key)."""


@dataclass(frozen=True)
class Identity:
    """The user a credential belongs to, and the id of the key it came from (never the key itself)."""

    user: str
    key_id: int


@dataclass(frozen=True)
class _Entry:
    user: str
    key: SecretStr
    key_id: int


class Accounts:
    """The accepted keys and their users. Thread-safe: revocations may come from any thread."""

    def __init__(self, keys: Mapping[str, SecretStr] | None = None) -> None:
        """``keys``: user name -> key; None (or empty) accepts any non-empty key as user ``"default"``."""
        self._salt = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._revoked: set[int] = set()
        self._entries: tuple[_Entry, ...] = tuple(
            _Entry(user, key, self._key_id(key.get_secret_value())) for user, key in (keys or {}).items())

    def __repr__(self) -> str:  # never the keys
        mode = "any key" if self.open else f"{len(self._entries)} key(s)"
        return f"Accounts({mode}, users={self.users()!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Accounts hold API keys and cannot be pickled")

    @classmethod
    def from_keys(cls, keys: str | Sequence[str] | Mapping[str, str] | None) -> Accounts:
        """From one key, a list of keys or a mapping user name -> key (see :func:`named_keys`)."""
        return cls(named_keys(keys))

    @property
    def open(self) -> bool:
        """True when any non-empty key is accepted (no key configured)."""
        return not self._entries

    @property
    def admin(self) -> str:
        """The admin user (see :func:`admin_of`)."""
        return admin_of(self.users())

    def is_admin(self, identity: Identity) -> bool:
        """Whether ``identity`` (from a key or a token issued for one) is the admin's."""
        return identity.user == self.admin

    def users(self) -> list[str]:
        """The configured users in order (``["default"]`` when any key is accepted)."""
        return [entry.user for entry in self._entries] or [DEFAULT_USER]

    def keys(self) -> dict[str, str]:
        """User name -> key, for tests and for the service's owner (empty when any key is accepted)."""
        return {entry.user: entry.key.get_secret_value() for entry in self._entries}

    def identify(self, key: str) -> Identity | None:
        """The identity ``key`` stands for, or None when it is not accepted (unknown, empty or revoked)."""
        if not key:
            return None
        given = key.encode()
        found: _Entry | None = None
        for entry in self._entries:  # every key is compared, so the time does not tell which matched
            if hmac.compare_digest(given, entry.key.get_secret_value().encode()) and found is None:
                found = entry
        if found is not None:
            identity = Identity(found.user, found.key_id)
        elif self.open:
            identity = Identity(DEFAULT_USER, self._key_id(key))
        else:
            return None
        return None if self.is_revoked(identity.key_id) else identity

    def revoke(self, key_id: int) -> None:
        """Refuse the key with this id (and the tokens issued for it) from now on."""
        with self._lock:
            self._revoked.add(key_id)

    def is_revoked(self, key_id: int) -> bool:
        with self._lock:
            return key_id in self._revoked

    def _key_id(self, key: str) -> int:
        """A 52-bit number naming ``key`` in this service (exact in a JSON double, as the official CLI's int)."""
        return int.from_bytes(hmac.new(self._salt, key.encode(), hashlib.sha256).digest()[:8], "big") >> 12


def admin_of(users: Sequence[str]) -> str:
    """The admin among ``users`` (in configured order): ``"default"`` if there, else the first (``"default"``
    when there is none: any key is accepted)."""
    return DEFAULT_USER if DEFAULT_USER in users or not users else users[0]


def named_keys(keys: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, SecretStr]:
    """User name -> key: one key is user ``"default"``; in a list, the first is ``"default"``, then
    ``"user-2"``, ``"user-3"``, ... (so adding keys after the first keeps its user's runs); a mapping
    names its users. Empty, repeated or blank keys and users are an :class:`InvalidKeysError`."""
    if keys is None:
        return {}
    if isinstance(keys, Mapping):
        pairs = list(keys.items())
    elif isinstance(keys, str):
        pairs = [(DEFAULT_USER, keys)]
    else:
        pairs = [(DEFAULT_USER if i == 0 else f"user-{i + 1}", key) for i, key in enumerate(keys)]
    if not pairs and not isinstance(keys, str):
        raise InvalidKeysError("no API key given: pass None (any key accepted) or at least one key")
    return checked_keys(pairs)


def configured_keys(api_key: str | None = None, api_keys: Sequence[str] | Mapping[str, str] | None = None,
                    api_key_file: str | os.PathLike[str] | None = None) -> dict[str, SecretStr]:
    """The keys a service is configured with, from at most one of its three sources ({}: any key)."""
    given = [name for name, value in (("api_key", api_key), ("api_keys", api_keys),
                                      ("api_key_file", api_key_file)) if value is not None]
    if len(given) > 1:
        raise InvalidKeysError(f"give one of api_key, api_keys and api_key_file, not {' and '.join(given)}")
    if api_key_file is not None:
        return load_key_file(api_key_file)
    return named_keys(api_keys if api_keys is not None else api_key)


def checked_keys(pairs: Sequence[tuple[str, str]]) -> dict[str, SecretStr]:
    """``pairs`` (user, key) as a mapping, refusing blank, repeated or whitespace-holding names and keys."""
    out: dict[str, SecretStr] = {}
    seen: set[str] = set()
    for position, (user, key) in enumerate(pairs, start=1):
        if not isinstance(user, str) or not user or user != user.strip() or any(c.isspace() for c in user):
            raise InvalidKeysError(f"API key #{position}: the user name {user!r} is empty or holds whitespace")
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise InvalidKeysError(f"API key #{position} (user {user!r}) is empty or holds whitespace")
        if key.startswith("eyJ"):
            raise InvalidKeysError(f"API key #{position} (user {user!r}) starts with 'eyJ', as tokens (JWTs) do: "
                                   "a key must not look like a token")
        if user in out:
            raise InvalidKeysError(f"API key #{position}: user {user!r} is named twice")
        if key in seen:
            raise InvalidKeysError(f"API key #{position} (user {user!r}) is the same key as an earlier one")
        seen.add(key)
        out[user] = SecretStr(key)
    return out


def load_key_file(path: str | os.PathLike[str]) -> dict[str, SecretStr]:
    """The users and keys of a key file (one ``user key`` per line; ``#`` comments and blank lines skipped).

    :class:`KeyFileError` when the file is missing or unreadable, readable by its group or others, holds
    no key, or has a line that is not two words; :class:`InvalidKeysError` for a repeated user or key.
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"key file {str(file)!r} is accessible to its group or others "
                               f"(mode {stat.S_IMODE(mode):o}): it holds secrets; run `chmod 600` on it")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"key file {str(file)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise KeyFileError(f"key file {str(file)!r} cannot be read: {reason}") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 2:
            raise KeyFileError(f"key file {str(file)!r}, line {number}: expected 'user key' (two words), "
                               f"found {len(words)} word(s)")
        pairs.append((words[0], words[1]))
    if not pairs:
        raise KeyFileError(f"key file {str(file)!r} holds no key (one 'user key' pair per line)")
    try:
        return checked_keys(pairs)
    except InvalidKeysError as error:
        raise KeyFileError(f"key file {str(file)!r}: {error}") from None
