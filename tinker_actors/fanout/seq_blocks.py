"""The seq ids one SamplingClient numbers its samples with.

The service de-duplicates retried samples by ``(sampling_session_id, seq_id)``, so two clients of one
sampling session (the original, and clones unpickled or built from a sampler handle in any process) must
never send the same seq id. Client number ``n`` numbers its samples from ``n * BLOCK``: the client that
created the session is number 0; a clone asks the service for its number (``join_sampling_session``, when
the server's flag ``sample_join_sampling_session`` says it serves it), once, before its first sample, or
else draws one at random between 1 and ``BLOCK`` (as the official 0.38 SDK does).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import TYPE_CHECKING

from tinker_actors.http import Purpose
from tinker_actors.types.join_sampling_session import JoinSamplingSessionRequest, JoinSamplingSessionResponse

if TYPE_CHECKING:
    from tinker_actors.clients.context import ClientContext

__all__ = ["BLOCK", "JOIN_PATH", "SeqIds"]

BLOCK = 1_000_000_000  # seq ids per client: a block holds more samples than any client sends
JOIN_PATH = "/api/v1/join_sampling_session"


class SeqIds:
    """The seq ids of one client: an original's start at 0; a clone's block is settled before its first sample.

    ``next()`` is called from the IoLoop only; the object outlives restarts of the client's actor.
    """

    __slots__ = ("_counter", "_settling", "client_number")

    def __init__(self, first: int | None) -> None:
        """``first``: the first seq id; None for a clone (its block is settled by :meth:`settle`)."""
        self._counter = itertools.count(first) if first is not None else None
        self._settling: asyncio.Task[None] | None = None
        self.client_number: int | None = None if first is None else first // BLOCK
        """The client's number in its sampling session (None until a clone's block is settled)."""

    @property
    def ready(self) -> bool:
        return self._counter is not None

    def __next__(self) -> int:
        if self._counter is None:
            raise RuntimeError("a clone's seq ids are settled before its first sample")
        return next(self._counter)

    async def settle(self, context: ClientContext, sampling_session_id: str) -> None:
        """Fix a clone's block, once: concurrent first samples share one request; a failed one is tried
        again by the next sample (and each waiting sample gets the typed error)."""
        if self._counter is not None:
            return
        task = self._settling
        if task is None:
            task = self._settling = asyncio.ensure_future(self._join(context, sampling_session_id))
            task.add_done_callback(_retrieve)
        try:
            await asyncio.shield(task)  # one sample cancelled does not cancel the others' join
        except asyncio.CancelledError:
            raise
        except BaseException:
            if self._settling is task:
                self._settling = None
            raise

    async def _join(self, context: ClientContext, sampling_session_id: str) -> None:
        flags = context.profile.flags
        if flags is not None and flags.sample_join_sampling_session:
            request = JoinSamplingSessionRequest(sampling_session_id=sampling_session_id)
            body = context.profile.codec.encode_json(request)
            response = await context.http.request(Purpose.SESSION, "POST", JOIN_PATH, content=body,
                                                  response_model=JoinSamplingSessionResponse,
                                                  endpoint="join_sampling_session")
            number = response.data.client_counter
        else:  # a server without the endpoint: a random block (a collision needs the same draw of 1 in 10^9)
            number = random.SystemRandom().randrange(1, BLOCK)
        if self._counter is None:
            self.client_number = number
            self._counter = itertools.count(number * BLOCK)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark the outcome as seen: the samples that waited for it got it already (or were cancelled)."""
    if not task.cancelled():
        task.exception()
