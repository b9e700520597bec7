"""Per-session request traces, exported in the Chrome / Perfetto trace-event JSON format.

The service's HTTP layer hands every answered request to :meth:`RequestTracer.record` (one call per
request, after its answer is built). The tracer works out which session the request belongs to from
what the request names, checking that the session is the caller's:

* ``session_id`` in the body (create_model, heartbeats, sampling sessions, telemetry) or in the path
  (finish, project, trace export); the answer of ``create_session``;
* ``model_id`` (training requests: the model's session), ``sampling_session_id`` (samples);
* ``request_id`` of a poll: the session of the request that was answered with that future.

A session's trace keeps its last ``max_events`` events (oldest dropped first), and the tracer keeps the
``max_sessions`` sessions seen last: memory stays bounded whatever runs. Traces live in memory: a
restarted service starts new ones.

:func:`trace_events_json` turns a session's events into a trace file that ui.perfetto.dev and
chrome://tracing open: complete events (``"ph": "X"``, ``ts``/``dur`` in microseconds) on one track per
endpoint under the process "requests" (HTTP requests, from arrival to answer; overlapping requests of
one endpoint get numbered lanes, since a track's slices must nest), and under the process "futures"
one track per kind of work, from the request's arrival to the poll that returned its result. ``args``
carry the request id, the HTTP status, the method, and the model, sampler and seq id named.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tinker_actors.local.engine.state import ApiError, Call, ServiceState
from tinker_actors.local.server.http_server import DropConnection, HttpResponse

__all__ = ["RequestTracer", "TraceEvent", "trace_events_json"]

# The id fields a request body may name, copied into an event's args.
_ARG_FIELDS = ("model_id", "sampling_session_id", "seq_id", "base_model", "model_path")
_SMALL_BODY = 64 * 1024  # a body nobody decoded yet is parsed for the trace only up to this size
_FUTURE_ANSWER_MAX = 4096  # a future's answer ({"request_id": ...}) is small; a bigger body is not one


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One slice of a trace: a request (``track`` = its endpoint) or a future's work (``future`` True).

    Values are kept as the request gave them (cheap to record); :meth:`args` picks and names them on export."""

    track: str
    start_us: int  # wall clock, microseconds since the epoch
    duration_us: int
    status: int | str | None = None
    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    ids: tuple[Any, ...] = ()  # the body's values of _ARG_FIELDS, in that order
    future: bool = False

    def args(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.method is not None:
            found["method"] = self.method
            found["path"] = self.path
        found["status"] = self.status if self.status is not None else "no answer"
        if self.request_id is not None:
            found["request_id"] = self.request_id
        for name, value in zip(_ARG_FIELDS, self.ids, strict=False):
            if isinstance(value, str | int) and not isinstance(value, bool):
                found[name] = value
        return found


def _now_us() -> int:
    return time.time_ns() // 1000


class _Pending:
    """A future's request, remembered until the poll that returns its result."""

    __slots__ = ("endpoint", "owner", "session_id", "start_us")

    def __init__(self, session_id: str, owner: str, endpoint: str, start_us: int) -> None:
        self.session_id = session_id
        self.owner = owner
        self.endpoint = endpoint
        self.start_us = start_us


class RequestTracer:
    """Records the requests of each session (see the module docstring). Used from the service loop only."""

    def __init__(self, state: ServiceState, *, max_sessions: int = 1000, max_events: int = 100_000,
                 max_pending: int = 100_000, clock: Callable[[], int] = _now_us) -> None:
        self._state = state
        self._max_sessions = max_sessions
        self._max_events = max_events
        self._max_pending = max_pending
        self._clock = clock
        self._sessions: OrderedDict[str, deque[TraceEvent]] = OrderedDict()  # least recently recorded first
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # request id -> its submission

    def clock(self) -> int:
        """Now, in the trace's time (microseconds since the epoch)."""
        return self._clock()

    def record(self, call: Call, answer: HttpResponse | DropConnection | None, start_us: int) -> None:
        """Note a request that arrived at ``start_us`` and was just answered (``answer`` None: it was
        cancelled; a dropped connection has no status)."""
        end_us = self._clock()
        status = answer.status if isinstance(answer, HttpResponse) else None
        fields = _fields(call)
        session_id = self._session_of(call, fields, answer)
        if session_id is None:
            return
        request_id = _answered_request_id(call.endpoint, answer)
        polled = fields.get("request_id") if call.endpoint == "retrieve_future" else None
        named = request_id if request_id is not None else polled if isinstance(polled, str) else None
        ids = tuple(map(fields.get, _ARG_FIELDS)) if fields else ()
        self._add(session_id, TraceEvent(call.endpoint, start_us, max(0, end_us - start_us), status, named,
                                         call.request.method, call.request.path, ids))
        if request_id is not None:
            self._remember(request_id, _Pending(session_id, call.user, call.endpoint, start_us))
        if isinstance(polled, str) and status == 200:
            self._finish_future(polled, call.user, end_us)

    def events(self, session_id: str, until_us: int | None = None) -> list[TraceEvent]:
        """The session's events that started before ``until_us`` (all when None), oldest first."""
        events = self._sessions.get(session_id, ())
        return [e for e in events if until_us is None or e.start_us <= until_us]

    # ---- attribution -------------------------------------------------------------------------
    def _session_of(self, call: Call, fields: dict[str, Any],
                    answer: HttpResponse | DropConnection | None) -> str | None:
        """The caller's session the request belongs to, or None."""
        state, user = self._state, call.user
        candidate = call.params.get("session_id") or fields.get("session_id")
        if candidate is None and call.endpoint == "create_session" and isinstance(answer, HttpResponse):
            candidate = _json_field(answer.body, "session_id")
        if isinstance(candidate, str):
            return candidate if state.storage.session(candidate, user) is not None else None
        model_id = fields.get("model_id")
        if isinstance(model_id, str):
            slot = state.models.get(model_id)
            if slot is not None:
                return slot.session_id if slot.owner == user else None
            run = state.storage.run(model_id, user)
            return run.session_id if run is not None else None
        sampler_id = fields.get("sampling_session_id")
        if isinstance(sampler_id, str):
            sampler = state.storage.sampler_of(sampler_id, user)
            return sampler.session_id if sampler is not None else None
        request_id = fields.get("request_id")
        if isinstance(request_id, str):
            pending = self._pending.get(request_id)
            return pending.session_id if pending is not None and pending.owner == user else None
        return None

    # ---- bookkeeping -------------------------------------------------------------------------
    def _add(self, session_id: str, event: TraceEvent) -> None:
        events = self._sessions.get(session_id)
        if events is None:
            events = self._sessions[session_id] = deque(maxlen=self._max_events)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        events.append(event)

    def _remember(self, request_id: str, pending: _Pending) -> None:
        if request_id in self._pending:  # a retried submission answered with the same future: keep the first
            return
        self._pending[request_id] = pending
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)

    def _finish_future(self, request_id: str, user: str, end_us: int) -> None:
        pending = self._pending.get(request_id)
        if pending is None or pending.owner != user:
            return
        del self._pending[request_id]
        self._add(pending.session_id, TraceEvent(
            pending.endpoint, pending.start_us, max(0, end_us - pending.start_us), "done", request_id, future=True))


def _fields(call: Call) -> dict[str, Any]:
    """The request's top-level body fields: as already decoded, else parsed if the body is small JSON."""
    fields = call.decoded_fields()
    if fields is not None:
        return fields
    body = call.request.body
    if not body or len(body) > _SMALL_BODY or body[:1] != b"{":
        return {}
    try:
        parsed = call.json()
    except ApiError:  # a malformed body is the handler's business, not the trace's
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _json_field(body: bytes, name: str) -> str | None:
    """A string field of a small JSON answer (a future's ``{"request_id": ...}``, a session's ``session_id``).
    A regular expression, not a parse: this runs for every answered request."""
    if not body or len(body) > _FUTURE_ANSWER_MAX or body[:1] != b"{":
        return None
    found = _STRING_FIELDS[name].search(body)
    return found.group(1).decode("utf-8", "replace") if found is not None else None


_STRING_FIELDS = {name: re.compile(rb'"' + name.encode() + rb'"\s*:\s*"([^"\\]{1,256})"')
                  for name in ("request_id", "session_id")}


def _answered_request_id(endpoint: str, answer: HttpResponse | DropConnection | None) -> str | None:
    """The request id of a future the request was answered with (``{"request_id": ...}``), if any."""
    if endpoint == "retrieve_future" or not isinstance(answer, HttpResponse) or answer.status != 200:
        return None
    return _json_field(answer.body, "request_id")


# ---- export ----------------------------------------------------------------------------------

_REQUESTS_PID = 1
_FUTURES_PID = 2


def trace_events_json(session_id: str, events: Iterable[TraceEvent], *, exported_at_us: int) -> bytes:
    """A trace-event JSON file of ``events`` (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for pid, what in ((_REQUESTS_PID, "requests"), (_FUTURES_PID, "futures")):
        out.append({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": f"{what} of session {session_id}"}})
        out.append({"ph": "M", "pid": pid, "name": "process_sort_index", "args": {"sort_index": pid}})
    lanes: dict[tuple[int, str], list[int]] = {}  # (pid, track) -> end of the last slice of each lane
    tids: dict[tuple[int, str, int], int] = {}
    for event in sorted(events, key=lambda e: (e.start_us, -e.duration_us)):
        pid = _FUTURES_PID if event.future else _REQUESTS_PID
        ends = lanes.setdefault((pid, event.track), [])
        lane = next((i for i, end in enumerate(ends) if end <= event.start_us), len(ends))
        end = event.start_us + event.duration_us
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        key = (pid, event.track, lane)
        tid = tids.get(key)
        if tid is None:
            tid = tids[key] = len(tids) + 1
            name = event.track if lane == 0 else f"{event.track} ({lane + 1})"
            out.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": name}})
        out.append({"ph": "X", "pid": pid, "tid": tid, "name": event.track,
                    "cat": "future" if event.future else "request", "ts": event.start_us,
                    "dur": event.duration_us, "args": event.args()})
    return json.dumps({"traceEvents": out, "displayTimeUnit": "ms",
                       "otherData": {"session_id": session_id, "exported_at_us": exported_at_us,
                                     "producer": "tinker-actors local service"}}).encode()
