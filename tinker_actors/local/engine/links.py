"""Key-less download links: an unguessable token that names something to download, until it expires.

The official service hands out signed URLs (external weights files, session traces) that a plain GET
fetches without an API key; the local service hands out ``/local/v1/...<token>`` URLs backed by this
table. A token is 32 random bytes (URL-safe base64), so the URL is the secret; it stops working at its
expiry, or earlier when what it names is gone (the resolver of the target checks that). The table is
bounded: expired links are dropped as new ones are issued, and beyond ``max_links`` the oldest go first.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

__all__ = ["DownloadLinks"]

T = TypeVar("T")


class DownloadLinks(Generic[T]):
    """token -> (target, expiry). Thread-safe."""

    def __init__(self, *, max_links: int = 100_000) -> None:
        self._links: OrderedDict[str, tuple[T, datetime]] = OrderedDict()  # in issue order
        self._max_links = max_links
        self._lock = threading.Lock()

    def issue(self, target: T, lifetime: timedelta) -> tuple[str, datetime]:
        """A new token for ``target`` and its expiry."""
        now = datetime.now(UTC)
        expires = now + lifetime
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired(now)
            while len(self._links) >= self._max_links:
                self._links.popitem(last=False)
            self._links[token] = (target, expires)
        return token, expires

    def resolve(self, token: str) -> T | None:
        """The target of a live token; None for an unknown or expired one."""
        now = datetime.now(UTC)
        with self._lock:
            link = self._links.get(token)
            if link is None:
                return None
            target, expires = link
            if expires <= now:
                del self._links[token]
                return None
            return target

    def __len__(self) -> int:
        with self._lock:
            return len(self._links)

    def _drop_expired(self, now: datetime) -> None:
        # Lifetimes are equal per table in practice, so the oldest links expire first: stop at a live one.
        while self._links:
            token, (_, expires) = next(iter(self._links.items()))
            if expires > now:
                break
            del self._links[token]
