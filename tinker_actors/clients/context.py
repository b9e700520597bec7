"""What every client of one ServiceClient shares: config, HTTP layer, runtime, and a blocking-call helper."""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tinker_actors.config import Config
from tinker_actors.errors import ClientStoppedError, TinkerTimeoutError
from tinker_actors.futures import PollSettings
from tinker_actors.http import HttpLayer
from tinker_actors.runtime import Runtime

__all__ = ["ClientContext"]

T = TypeVar("T")


@dataclass
class ClientContext:
    """Immutable after construction except ``closed``; safe to share between threads and actors."""

    config: Config
    http: HttpLayer
    runtime: Runtime
    poll: PollSettings
    session_id: str = ""
    closed: bool = field(default=False)

    def submit(self, coro: Coroutine[Any, Any, T], *,
               context: contextvars.Context | None = None) -> concurrent.futures.Future[T]:
        """Run a coroutine in the IoLoop (all network I/O happens there), in the caller's ``contextvars``
        context unless another is given (an actor passes the context its caller had)."""
        if self.closed:
            coro.close()
            raise ClientStoppedError("the ServiceClient is closed")
        return self.runtime.ioloop.submit(coro, context=context if context is not None else contextvars.copy_context())

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine in the IoLoop and wait for it, with a deadline (never an unbounded wait)."""
        limit = timeout if timeout is not None else self.config.no_progress_timeout + self.config.timeouts.default
        future = self.submit(coro)
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TinkerTimeoutError(f"no answer within {limit:.0f} s") from None
