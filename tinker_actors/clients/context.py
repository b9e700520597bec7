"""What every client of one ServiceClient shares: config, HTTP layer, runtime, the negotiated protocol, and a
blocking-call helper."""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tinker_actors.call_style import refuse_blocking
from tinker_actors.clients.protocol import ProtocolProfile, pinned_profile
from tinker_actors.config import Config
from tinker_actors.errors import ClientStoppedError, TinkerTimeoutError
from tinker_actors.futures import PollSettings
from tinker_actors.http import HttpLayer
from tinker_actors.http.budget import ByteBudget
from tinker_actors.runtime import Runtime

if TYPE_CHECKING:
    from tinker_actors.telemetry import SessionTelemetry

__all__ = ["ClientContext"]

T = TypeVar("T")


@dataclass
class ClientContext:
    """Safe to share between threads and actors. Set once while the ServiceClient starts: ``session_id``,
    ``profile`` and ``response_budget``; afterwards only ``closed`` changes, and ``profile`` is replaced
    (never mutated) by the ServiceClient's actor when the server's dynamic flags are refreshed."""

    config: Config
    http: HttpLayer
    runtime: Runtime
    poll: PollSettings
    session_id: str = ""
    closed: bool = field(default=False)
    profile: ProtocolProfile = field(default_factory=lambda: _unnegotiated())
    """What the ServiceClient speaks (the codec every request goes through) and the server's flags."""
    response_budget: ByteBudget | None = None
    """Room for results the server announced by size first (protocol 0.38), shared by the clients."""
    dispatch_budget: ByteBudget | None = None
    """Bytes of forward_backward requests being sent at once (protocol 0.38), shared by the training clients."""
    sessionless_telemetry: SessionTelemetry | None = None
    """Where errors of calls made without a session are reported (protocol 0.38, telemetry on): set once, by the
    ServiceClient when its first REST client is made before the session exists."""

    def use_profile(self, profile: ProtocolProfile) -> None:
        """Adopt the negotiated protocol: its codec, its headers, its response budget."""
        self.profile = profile
        self.http.announce_sdk_version(profile.sdk_version if profile.codec.sends_sdk_method else None)
        responses, dispatch = profile.response_bytes_in_flight, profile.forward_backward_bytes_in_flight
        self.response_budget = ByteBudget(responses) if responses is not None else None
        self.dispatch_budget = ByteBudget(dispatch) if dispatch is not None else None

    def submit(self, coro: Coroutine[Any, Any, T], *,
               context: contextvars.Context | None = None) -> concurrent.futures.Future[T]:
        """Run a coroutine in the IoLoop (all network I/O happens there), in the caller's ``contextvars``
        context unless another is given (an actor passes the context its caller had)."""
        if self.closed:
            coro.close()
            raise ClientStoppedError("the ServiceClient is closed")
        return self.runtime.ioloop.submit(coro, context=context if context is not None else contextvars.copy_context())

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine in the IoLoop and wait for it, with a deadline (never an unbounded wait). Refused where
        the wait would block the thread that has to answer (:func:`~tinker_actors.call_style.refuse_blocking`)."""
        try:
            refuse_blocking(f"A blocking client call ({getattr(coro, '__qualname__', 'a request')})",
                            "Make it from a thread of your own, or use its async form.")
        except BaseException:
            coro.close()
            raise
        limit = timeout if timeout is not None else self.config.no_progress_timeout + self.config.timeouts.default
        future = self.submit(coro)
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TinkerTimeoutError(f"no answer within {limit:.0f} s") from None



def _unnegotiated() -> ProtocolProfile:
    """The profile before negotiation: 0.6.3, no flags."""
    return pinned_profile(Config())
