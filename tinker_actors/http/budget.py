"""A budget of bytes in flight: request bodies being sent, or results being fetched (FEATURES S4, protocol 0.38).

Used from the IoLoop only. A holder waits while its bytes would not fit; one larger than the whole budget
still goes, alone, so that nothing waits forever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ByteBudget"]


class ByteBudget:
    """At most ``limit`` bytes held at once, granted in arrival order (a single larger holder goes alone)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget must be at least 1 byte")
        self.limit = limit
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def __repr__(self) -> str:
        return f"ByteBudget(used={self.used}, limit={self.limit}, waiting={len(self._waiters)})"

    def _fits(self, size: int) -> bool:
        return self.used == 0 or self.used + size <= self.limit

    async def acquire(self, size: int) -> None:
        """Wait until ``size`` bytes fit (after those already waiting), then hold them; give them back with
        :meth:`release`. Cancelled while waiting, it holds nothing."""
        size = max(size, 0)
        if not self._waiters and self._fits(size):
            self.used += size
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(size)  # granted just before the cancellation arrived
            else:
                granted.cancel()
                self._grant()  # a smaller holder behind this one may fit now
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` bytes (synchronous, so it also runs in a ``finally`` of a cancelled task)."""
        self.used -= max(size, 0)
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, granted = self._waiters[0]
            if granted.done():
                self._waiters.popleft()
                continue
            if not self._fits(size):
                return
            self._waiters.popleft()
            self.used += size
            granted.set_result(None)

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes for the duration of the block."""
        await self.acquire(size)
        try:
            yield
        finally:
            self.release(size)
