"""Batched polling of sample futures (protocol 0.38's ``retrieve_futures``, when the server turns
``sample_use_retrieve_futures`` on).

Instead of one long poll per sample, one :class:`SessionPoller` per sampling session (and clone) long-polls
``retrieve_futures``, which answers every sample of the session that finished since the last cursor; each
waiting sample then fetches its result with one ``retrieve_future`` that answers at once. At C samples in
flight that is one held connection instead of C, and when samples outlast the server's long poll, one
re-poll per long poll instead of C (docs/performance.md, "Batched sample polls").

Lives on the IoLoop. The loop runs only while someone waits; a non-retryable error of the endpoint (the
HTTP layer already retried what is retryable) fails every current waiter with that typed error, and the
next waiter starts a fresh loop. A wait is bounded by its caller's deadline (then the caller polls the
future by itself): nobody waits on a poller forever.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from tinker_actors.errors import TinkerError
from tinker_actors.http import HttpLayer, Purpose
from tinker_actors.types.future_completion import FutureCompletion
from tinker_actors.types.futures_retrieve_request import FuturesRetrieveRequest, SamplingSessionFuturesTarget
from tinker_actors.types.futures_retrieve_response import FuturesRetrieveResponse
from tinker_actors.wire import ClientCodec

__all__ = ["CLONE_SEQ_IDS", "SessionPoller"]

_log = logging.getLogger(__name__)

# 0.38 numbers a clone's seq ids from clone * 1e9; its completions come from its own queue.
CLONE_SEQ_IDS = 1_000_000_000
# Completions that arrived before anybody waited for them (or for samples given up on) kept at most.
_MAX_UNCLAIMED = 10_000
_RETRIEVE_FUTURES = "/api/v1/retrieve_futures"


class SessionPoller:
    """The batched poll of one sampling session (or clone). IoLoop only."""

    def __init__(self, http: HttpLayer, codec: ClientCodec, sampling_session_id: str, clone: int, *,
                 request_timeout: float) -> None:
        self._http = http
        self._codec = codec
        self._target = SamplingSessionFuturesTarget(sampling_session_id=sampling_session_id, cloned_sampler_id=clone)
        self._request_timeout = request_timeout
        self._cursor = 0
        self._waiters: dict[str, asyncio.Future[FutureCompletion]] = {}
        self._unclaimed: collections.OrderedDict[str, FutureCompletion] = collections.OrderedDict()
        self._retrieved: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self.polls = 0

    async def wait_for(self, request_id: str, timeout: float) -> FutureCompletion | None:
        """``request_id``'s completion once a batched poll reports it; None if ``timeout`` passed first.
        Raises the endpoint's typed error if the batched poll failed meanwhile."""
        known = self._unclaimed.pop(request_id, None)
        if known is not None:
            return known
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll_loop(), name="retrieve_futures")
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(request_id, None)

    def retrieved(self, request_id: str) -> None:
        """Its result was read: the next poll tells the server it may drop it."""
        self._retrieved.append(request_id)

    async def _poll_loop(self) -> None:
        try:
            while self._waiters:
                retrieved, self._retrieved = self._retrieved, []
                body = self._codec.encode_json(FuturesRetrieveRequest(
                    target=self._target, prev_cursor=self._cursor, retrieved_request_ids=retrieved))
                self.polls += 1
                answer = await self._http.request(Purpose.FUTURES, "POST", _RETRIEVE_FUTURES, content=body,
                                                  response_model=FuturesRetrieveResponse,
                                                  timeout=self._request_timeout, endpoint="retrieve_futures")
                self._cursor = answer.data.cursor
                for completion in answer.data.completions:
                    waiter = self._waiters.pop(completion.request_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(completion)
                    else:
                        self._unclaimed[completion.request_id] = completion
                        while len(self._unclaimed) > _MAX_UNCLAIMED:
                            self._unclaimed.popitem(last=False)
        except TinkerError as error:
            _log.warning("retrieve_futures for sampling session %s failed: %s", self._target.sampling_session_id,
                         error)
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(error)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
