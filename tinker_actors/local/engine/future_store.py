"""Futures of the local service: request ids, long-polled results, expiry.

Every submission endpoint answers at once with a ``request_id`` (random, unguessable); the work finishes later and its
result (or its error) is stored here so that it can be read again and again (a client may poll the
same id after a dropped connection). Only ids that were never issued, or whose result expired, are
unknown (the server then answers 410). A future belongs to the user whose request created it: to any
other user its id is unknown, exactly as one never issued. Lives on the service's event loop: no locks.

A result is a :class:`Result`: JSON for every client, and for forward_backward and sample results
also protobuf, which protocol 0.38 asks for (``Accept: application/x-protobuf``). Each form is
encoded the first time a poll asks for it and kept, so a result costs only the encoding its client reads.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from tinker_actors.local.engine.storage import DEFAULT_OWNER

__all__ = ["FutureOutcome", "FutureState", "FutureStore", "Result"]


class FutureState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    UNKNOWN = "unknown"


class Result:
    """A finished future's answer: JSON always, protobuf for the result types protocol 0.38 reads so.

    ``json`` and ``protobuf`` are the bytes or a function that encodes them (called at most once, on
    the first poll that asks for that form). ``size_hint`` estimates the encoded size, so that a big
    result is encoded off the service loop. An error is JSON only.
    """

    __slots__ = ("_json", "_protobuf", "error", "size_hint")

    def __init__(self, json_body: bytes | Callable[[], bytes], *, protobuf: bytes | Callable[[], bytes] | None = None,
                 size_hint: int | None = None, error: bool = False) -> None:
        self._json = json_body
        self._protobuf = protobuf
        self.error = error
        self.size_hint = size_hint if size_hint is not None else len(json_body) if isinstance(json_body, bytes) else 0

    @classmethod
    def failure(cls, message: str, category: str) -> Result:
        """``{"error": message, "category": "user"|"server"}``."""
        return cls(json.dumps({"error": message, "category": category}).encode(), error=True)

    @property
    def has_protobuf(self) -> bool:
        return self._protobuf is not None

    def encoded(self, form: str) -> bool:
        """Whether ``form`` (``"json"`` or ``"protobuf"``) is already encoded (answering it costs nothing)."""
        return isinstance(self._protobuf if form == "protobuf" else self._json, bytes)

    def json(self) -> bytes:
        if not isinstance(self._json, bytes):
            self._json = self._json()
        return self._json

    def protobuf(self) -> bytes:
        """The protobuf encoding; only for results that have one (:attr:`has_protobuf`)."""
        if self._protobuf is None:
            raise ValueError("this result has no protobuf form")
        if not isinstance(self._protobuf, bytes):
            self._protobuf = self._protobuf()
        return self._protobuf


@dataclass(frozen=True)
class FutureOutcome:
    """What a poll sees: pending, unknown, or done with its :class:`Result`."""

    state: FutureState
    result: Result | None = None


@dataclass
class _Entry:
    request_type: str
    model_id: str | None
    created: float
    owner: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: Result | None = None
    finished: float | None = None


class FutureStore:
    """Issues request ids and keeps their results for ``result_ttl_s`` after they finish."""

    def __init__(self, *, result_ttl_s: float) -> None:
        self._result_ttl_s = result_ttl_s
        self._entries: dict[str, _Entry] = {}
        self._finished: deque[tuple[float, str]] = deque()  # in finishing order, so expiry is cheap

    def create(self, request_type: str, model_id: str | None, owner: str = DEFAULT_OWNER) -> str:
        """A new pending future of ``owner``. Its id is 128 random bits: whoever holds a request id (and
        is its owner) may read its result, so ids must not be guessable from one's own (no counter, no clock)."""
        request_id = f"req-{secrets.token_urlsafe(16)}"
        while request_id in self._entries:  # never in practice; cheap to rule out
            request_id = f"req-{secrets.token_urlsafe(16)}"
        self._entries[request_id] = _Entry(request_type, model_id, time.monotonic(), owner)
        return request_id

    def request_type(self, request_id: str) -> str | None:
        entry = self._entries.get(request_id)
        return entry.request_type if entry is not None else None

    def resolve(self, request_id: str, payload: bytes | Result) -> None:
        """Store the success payload: encoded JSON (it must not carry a top-level ``error``) or a :class:`Result`."""
        self._finish(request_id, payload if isinstance(payload, Result) else Result(payload))

    def fail(self, request_id: str, message: str, category: str) -> None:
        """Store a failure: ``{"error": message, "category": "user"|"server"}``."""
        self._finish(request_id, Result.failure(message, category))

    def _finish(self, request_id: str, result: Result) -> None:
        entry = self._entries.get(request_id)
        if entry is None or entry.done.is_set():
            return
        entry.result = result
        entry.finished = time.monotonic()
        entry.done.set()
        self._finished.append((entry.finished, request_id))

    async def wait(self, request_id: str, timeout_s: float, owner: str = DEFAULT_OWNER) -> FutureOutcome:
        """Hold the poll until the result is ready or ``timeout_s`` passed (the long poll). Another
        user's future is unknown to ``owner``, at once (no wait tells it apart from an unknown id)."""
        self.expire()
        entry = self._entries.get(request_id)
        if entry is None or entry.owner != owner:
            return FutureOutcome(FutureState.UNKNOWN)
        if not entry.done.is_set() and timeout_s > 0:
            try:
                async with asyncio.timeout(timeout_s):
                    await entry.done.wait()
            except TimeoutError:
                pass
        if entry.done.is_set():
            return FutureOutcome(FutureState.DONE, entry.result)
        return FutureOutcome(FutureState.PENDING)

    def expire(self) -> None:
        """Forget results that finished more than ``result_ttl_s`` ago."""
        horizon = time.monotonic() - self._result_ttl_s
        while self._finished and self._finished[0][0] < horizon:
            _, request_id = self._finished.popleft()
            self._entries.pop(request_id, None)

    def forget(self, request_id: str) -> None:
        self._entries.pop(request_id, None)

    @property
    def pending_count(self) -> int:
        return sum(1 for e in self._entries.values() if not e.done.is_set())

    def __len__(self) -> int:
        return len(self._entries)
