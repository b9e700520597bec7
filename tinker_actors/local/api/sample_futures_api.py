"""Protocol 0.38's sample-future endpoints: ``cancel_future`` and the batched poll ``retrieve_futures``.

``cancel_future {"request_id"}`` stops a sample nobody waits for anymore (a queued one never starts, a running
one stops at its next token) and answers its future at once as failed, "cancelled"; cancelling a finished or
unknown sample changes nothing (``"cancelled": false``), so a client may send it blindly. Clients send it when
``sample_cancel_enabled`` is on.

``retrieve_futures`` answers which samples of one sampling session (or clone) finished since ``prev_cursor``,
holding the poll up to the service's long-poll time (or the request's shorter ``timeout``) while none did;
the results themselves are read with ``retrieve_future`` as before. Clients use it when
``sample_use_retrieve_futures`` is on. The bookkeeping is :mod:`tinker_actors.local.engine.sample_work`'s.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from tinker_actors.local.api.routes import Router
from tinker_actors.local.engine.sample_work import CANCELLED_MESSAGE, sample_work_of
from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.http_server import HttpResponse
from tinker_actors.types.futures_retrieve_request import FuturesRetrieveRequest

__all__ = ["SampleFuturesApi"]


class _CancelFutureRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    request_id: str


class SampleFuturesApi:
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    def register(self, router: Router) -> None:
        router.add("POST", "/api/v1/cancel_future", "cancel_future", self.cancel_future)
        router.add("POST", "/api/v1/retrieve_futures", "retrieve_futures", self.retrieve_futures)

    async def cancel_future(self, call: Call) -> HttpResponse:
        req = call.parse(_CancelFutureRequest)
        state = self._state
        cancelled = sample_work_of(state).cancel(req.request_id, call.user)
        if cancelled:  # the waiting client (if any) learns it now, not when the worker reaches the sample
            state.futures.fail(req.request_id, CANCELLED_MESSAGE, "user")
        return HttpResponse(200, json.dumps({"request_id": req.request_id, "cancelled": cancelled}).encode())

    async def retrieve_futures(self, call: Call) -> HttpResponse:
        req = call.parse(FuturesRetrieveRequest)
        state = self._state
        target = req.target
        slot = state.sampler_slot(target.sampling_session_id)
        if slot is None or slot.record.owner != call.user:
            raise ApiError(404, f"unknown or expired sampling session {target.sampling_session_id!r}")
        if target.cloned_sampler_id < 0 or req.prev_cursor < 0:
            raise ApiError(400, f"{call.endpoint}: cloned_sampler_id and prev_cursor are 0 or more")
        if req.timeout is not None and not req.timeout >= 0:
            raise ApiError(400, f"{call.endpoint}: timeout is a number of seconds (0 or more), got {req.timeout}")
        if slot.record.session_id:
            state.sessions.touch(slot.record.session_id)
        wait_s = state.config.long_poll_s if req.timeout is None else min(req.timeout, state.config.long_poll_s)
        # retrieved_request_ids need no action: a result is kept result_ttl_s after it finished, then dropped.
        events, cursor = await sample_work_of(state).completions(slot.record.sampler_id, target.cloned_sampler_id,
                                                                 req.prev_cursor, wait_s)
        body = {"completions": [event.to_json() for event in events], "cursor": cursor}
        return HttpResponse(200, json.dumps(body).encode())
