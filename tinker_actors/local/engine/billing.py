"""Simulated billing of the local service: a token budget per user, and the usage it is spent on.

Every piece of model work a user's request caused is recorded as a :class:`UsageEvent` when it finishes:
tokens trained (the datum tokens of a ``forward_backward`` or ``forward``), prompt tokens read while
sampling (``sampling_prefill``) and tokens generated (``sampling_sample``). Usage is always recorded;
budgets are off by default: a user without a budget is unlimited, so nothing changes for anyone who
does not ask for billing.

A budget is a balance of tokens. Finished work is charged against it; once the balance is zero or less,
the user's *new* training and sampling submissions are refused (HTTP 402, see
:mod:`tinker_actors.local.api.billing_api`). Work accepted before that still runs to the end and is
charged, so a balance can end below zero; a top-up adds to the balance (it must cover that overdraft
before the next request is accepted).

:class:`BillingLedger` is thread-safe: the service loop charges while a test (or the admin endpoints)
sets budgets. It outlives :meth:`LocalService.restart` and is mirrored to ``<data_dir>/billing.json``
(balances, tokens used, and usage summed per UTC hour, user, kind, base model and session), so a
service started again on the same data directory continues where it stopped. Usage is written at most
once a second and at shutdown (a crash can lose the last second of it); budget changes at once. The
per-request events themselves are kept in memory only, the most recent :data:`RECENT_EVENTS`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from tinker_actors.errors import InvalidInputError
from tinker_actors.local.engine.storage import write_json_atomic

__all__ = [
    "ALL_USERS",
    "RECENT_EVENTS",
    "Account",
    "BillingLedger",
    "InvalidBudgetError",
    "UsageBucket",
    "UsageEvent",
    "UsageKind",
    "hour_of",
]

UsageKind = Literal["training", "sampling_prefill", "sampling_sample"]
_KINDS: tuple[str, ...] = get_args(UsageKind)

ALL_USERS = "*"  # in a budget mapping: the opening balance of every user not named
RECENT_EVENTS = 10_000
_FLUSH_INTERVAL_S = 1.0
_FORMAT_VERSION = 1
_BucketKey = tuple[datetime, str, UsageKind, str, str | None]  # hour, user, kind, base model, session


class InvalidBudgetError(InvalidInputError):
    """A budget or top-up that is not a whole number of tokens (or a user name that cannot be one)."""


def _checked_tokens(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidBudgetError(f"{what} is a whole number of tokens (0 or more), got {value!r}")
    return value


def _checked_user(user: object, *, default_allowed: bool = False) -> str:
    if not isinstance(user, str) or not user or any(c.isspace() for c in user):
        raise InvalidBudgetError(f"a user name is a non-empty name without whitespace, got {user!r}")
    if user == ALL_USERS and not default_allowed:
        raise InvalidBudgetError(f"{ALL_USERS!r} names no user: the opening balance of every user not named is "
                                 "given when the service starts")
    return user


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` falls in."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class UsageEvent:
    """One finished piece of work: who, what, when, how many tokens, on which model."""

    time: datetime
    user: str
    kind: UsageKind
    tokens: int
    base_model: str
    session_id: str | None
    model_id: str | None  # the training run, or the sampler (sampling session id or checkpoint path)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(), "user": self.user, "kind": self.kind, "tokens": self.tokens,
                "base_model": self.base_model, "session_id": self.session_id, "model_id": self.model_id}


@dataclass(frozen=True)
class UsageBucket:
    """Tokens of one kind summed over one UTC hour, for one user, base model and session."""

    hour: datetime
    user: str
    kind: UsageKind
    base_model: str
    session_id: str | None
    tokens: int

    @property
    def key(self) -> _BucketKey:
        return self.hour, self.user, self.kind, self.base_model, self.session_id

    def to_json(self) -> dict[str, Any]:
        return {"hour": self.hour.isoformat(), "user": self.user, "kind": self.kind,
                "base_model": self.base_model, "session_id": self.session_id, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageBucket:
        kind = data["kind"]
        if kind not in _KINDS:
            raise ValueError(f"unknown usage kind {kind!r}")
        return cls(hour=hour_of(datetime.fromisoformat(data["hour"])), user=str(data["user"]), kind=kind,
                   base_model=str(data["base_model"]), session_id=data.get("session_id"),
                   tokens=int(data["tokens"]))


@dataclass(frozen=True)
class Account:
    """A user's balance (``budget``: tokens left, None for unlimited, below zero when overdrawn) and
    the tokens charged to them so far."""

    user: str
    budget: int | None
    used: int

    @property
    def spent(self) -> bool:
        """Whether new training and sampling requests are refused (a budget of zero tokens or less)."""
        return self.budget is not None and self.budget <= 0

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "budget": self.budget, "used": self.used, "unlimited": self.budget is None,
                "spent": self.spent}


class BillingLedger:
    """Budgets and usage of every user (thread-safe; see the module docstring)."""

    def __init__(self, budgets: Mapping[str, int | None] | None = None, *,
                 recent_events: int = RECENT_EVENTS) -> None:
        """``budgets``: user -> opening balance in tokens (None: unlimited); the user ``"*"`` gives every
        user not named their opening balance. Without budgets every user is unlimited."""
        opening: dict[str, int | None] = {}
        for user, tokens in (budgets or {}).items():
            checked = None if tokens is None else _checked_tokens(tokens, f"the budget of {user!r}")
            opening[_checked_user(user, default_allowed=True)] = checked
        self._default: int | None = opening.pop(ALL_USERS, None)
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] = {user: Account(user, tokens, 0) for user, tokens in opening.items()}
        self._buckets: dict[_BucketKey, int] = {}  # tokens
        self._recent: deque[UsageEvent] = deque(maxlen=recent_events)
        self._path: Path | None = None
        self._dirty = False
        self._last_flush = 0.0

    def __repr__(self) -> str:
        with self._lock:
            budgets = {user: account.budget for user, account in self._accounts.items()}
        return f"BillingLedger(default={self._default!r}, budgets={budgets!r})"

    @property
    def default_budget(self) -> int | None:
        """The opening balance of a user no budget names (None: unlimited)."""
        return self._default

    # ---- budgets -----------------------------------------------------------------------------
    def account(self, user: str) -> Account:
        """``user``'s account (one that was never used: the opening balance, nothing used)."""
        with self._lock:
            return self._accounts.get(user) or Account(user, self._default, 0)

    def accounts(self) -> list[Account]:
        """Every user with a budget or usage, by name."""
        with self._lock:
            return [self._accounts[user] for user in sorted(self._accounts)]

    def _account(self, user: str) -> Account:
        account = self._accounts.get(user)
        if account is None:
            account = self._accounts[user] = Account(user, self._default, 0)
        return account

    def set_budget(self, user: str, tokens: int | None) -> Account:
        """Set ``user``'s balance to ``tokens`` (None: unlimited)."""
        _checked_user(user)
        if tokens is not None:
            _checked_tokens(tokens, "a budget")
        with self._lock:
            account = self._accounts[user] = replace(self._account(user), budget=tokens)
            self._save_now()
            return account

    def top_up(self, user: str, tokens: int) -> Account:
        """Add ``tokens`` to ``user``'s balance. An unlimited user stays unlimited."""
        _checked_user(user)
        _checked_tokens(tokens, "a top-up")
        with self._lock:
            account = self._account(user)
            if account.budget is not None:
                account = self._accounts[user] = replace(account, budget=account.budget + tokens)
                self._save_now()
            return account

    def refusal(self, user: str) -> Account | None:
        """``user``'s account when their budget is spent (their new work must be refused), else None."""
        with self._lock:
            account = self._accounts.get(user)
            if account is None and self._default is None:
                return None
            account = self._account(user)
            return account if account.spent else None

    # ---- usage -------------------------------------------------------------------------------
    def charge(self, event: UsageEvent) -> None:
        """Record ``event`` and charge its tokens to its user."""
        if event.tokens <= 0:
            return
        with self._lock:
            account = self._account(event.user)
            budget = account.budget - event.tokens if account.budget is not None else None
            self._accounts[event.user] = Account(event.user, budget, account.used + event.tokens)
            key = (hour_of(event.time), event.user, event.kind, event.base_model, event.session_id)
            self._buckets[key] = self._buckets.get(key, 0) + event.tokens
            self._recent.append(event)
            self._dirty = True

    def usage(self, user: str, starting_on: datetime, ending_before: datetime) -> list[UsageBucket]:
        """``user``'s hourly usage with ``starting_on <= hour < ending_before``, by hour, then most tokens first."""
        with self._lock:
            found = [UsageBucket(hour, who, kind, model, session, tokens)
                     for (hour, who, kind, model, session), tokens in self._buckets.items()
                     if who == user and starting_on <= hour < ending_before]
        return sorted(found, key=lambda b: (b.hour, -b.tokens, b.kind, b.base_model, b.session_id or ""))

    def recent_events(self, user: str | None = None, limit: int | None = None) -> list[UsageEvent]:
        """The most recent events (``user``'s only, when given), oldest first; at most ``limit``."""
        with self._lock:
            events = [e for e in self._recent if user is None or e.user == user]
        if limit is not None and limit < len(events):
            return events[len(events) - limit:]
        return events

    # ---- persistence -------------------------------------------------------------------------
    def open(self, path: Path) -> None:
        """Mirror the ledger to ``path``, reading what an earlier service left there first: its balances
        replace the opening balances of the users it knows (their top-ups and spending carry on)."""
        with self._lock:
            self._path = path
            if path.exists():
                with contextlib.suppress(ValueError, OSError, TypeError, KeyError):
                    self._load(json.loads(path.read_text(encoding="utf-8")))
            self._save_now()

    def _load(self, data: dict[str, Any]) -> None:
        accounts = {}
        for user, item in data["accounts"].items():
            budget = item.get("budget")
            accounts[user] = Account(user, None if budget is None else int(budget), int(item.get("used", 0)))
        buckets = {}
        for item in data.get("usage", []):
            bucket = UsageBucket.from_json(item)
            buckets[bucket.key] = bucket.tokens
        self._accounts.update(accounts)
        self._buckets.update(buckets)

    def close(self) -> None:
        """Write what is unwritten and stop mirroring (the service stopped; :meth:`open` starts again)."""
        with self._lock:
            if self._dirty:
                self._save_now()
            self._path = None

    def flush(self, *, force: bool = False) -> None:
        """Write recorded usage if any is unwritten (at most once a second unless ``force``)."""
        with self._lock:
            if self._path is None or not self._dirty:
                return
            if not force and time.monotonic() - self._last_flush < _FLUSH_INTERVAL_S:
                return
            self._save_now()

    def _save_now(self) -> None:
        if self._path is None:
            return
        data = {"version": _FORMAT_VERSION,
                "accounts": {user: {"budget": a.budget, "used": a.used} for user, a in self._accounts.items()},
                "usage": [UsageBucket(*key, tokens).to_json() for key, tokens in self._buckets.items()]}
        write_json_atomic(self._path, data)
        self._dirty = False
        self._last_flush = time.monotonic()
