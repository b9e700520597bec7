"""Telling the server about samples nobody waits for anymore (protocol 0.38's ``cancel_future``).

When the server turns ``sample_cancel_enabled`` on (``client/dynamic_config``, refreshed while the client lives),
a sample whose caller cancelled or dropped its future while the server was working on it is named to
``POST cancel_future``, so the server stops the work (a queued sample never starts, a running one stops at its
next token) instead of finishing it for nobody. Requests go out in the background, at most
``sample_cancel_max_batch_size`` at once; a failed one is logged and dropped (the server's own expiry still
ends the work): a cancel never raises to anyone and never delays the caller's cancellation.

Lives on the IoLoop (one :class:`SampleCancels` per sampling client actor).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable

from tinker_actors.clients.protocol import DynamicFlags
from tinker_actors.errors import TinkerError
from tinker_actors.http import HttpLayer, Purpose

__all__ = ["SampleCancels"]

_log = logging.getLogger(__name__)
_CANCEL_FUTURE = "/api/v1/cancel_future"
_CANCEL_TIMEOUT_S = 30.0


class SampleCancels:
    """The cancels of one sampling client. ``flags`` reads the current dynamic flags (None: 0.6.3, no cancel)."""

    def __init__(self, http: HttpLayer, flags: Callable[[], DynamicFlags | None]) -> None:
        self._http = http
        self._flags = flags
        self._queue: collections.deque[str] = collections.deque()
        self._drain: asyncio.Task[None] | None = None
        self.sent = 0

    def cancel(self, request_id: str) -> bool:
        """Queue a cancel for ``request_id`` if the server asks for them; whether it was queued."""
        flags = self._flags()
        if flags is None or not flags.sample_cancel_enabled:
            return False
        self._queue.append(request_id)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._send_all(), name="cancel_future")
        return True

    async def _send_all(self) -> None:
        while self._queue:
            flags = self._flags()
            size = flags.sample_cancel_max_batch_size if flags is not None else 1
            batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
            await asyncio.gather(*(self._send(request_id) for request_id in batch))

    async def _send(self, request_id: str) -> None:
        try:
            await self._http.request(Purpose.SAMPLING, "POST", _CANCEL_FUTURE,
                                     content=json.dumps({"request_id": request_id}).encode(),
                                     timeout=_CANCEL_TIMEOUT_S, endpoint="cancel_future")
            self.sent += 1
        except TinkerError as error:
            _log.warning("cancel_future for %s failed (the server ends the work on its own later): %s",
                         request_id, error)
