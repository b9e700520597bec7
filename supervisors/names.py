"""Stable names: a handle that always reaches the current incarnation of a supervised child."""

from __future__ import annotations

import time
from typing import Any

import pykka
from pykka import ActorDeadError, ActorProxy, ActorRef

from supervisors.directory import ChildDirectory, ChildInfo
from supervisors.errors import AskTimeout, NameLookupTimeout

__all__ = ["NamedRef"]

# pykka's own wording for a message that never reached a handler (the actor was dead, or died with
# the message still queued). Only those are safe to send again to the replacement.
_NEVER_HANDLED_SUFFIXES = ("stopped before handling the message", "not found")


class NamedRef:
    """Reach child ``child_id`` of a supervisor, whichever incarnation is current.

    A restart replaces the actor (pykka actors cannot be restarted), so a plain ``ActorRef`` goes
    stale. A ``NamedRef`` resolves the id through the supervisor's directory, caches the ref while
    it is alive, and when it finds the actor dead waits up to ``lookup_timeout`` seconds for the
    supervisor to publish the replacement. A message that was never handled (the actor was dead
    when it arrived) is sent again to the replacement; one that was handled is never resent.
    """

    __slots__ = ("_cached", "_directory", "child_id", "lookup_timeout")

    def __init__(self, directory: ChildDirectory, child_id: str, *, lookup_timeout: float = 2.0) -> None:
        self._directory = directory
        self.child_id = child_id
        self.lookup_timeout = lookup_timeout
        self._cached: ActorRef[Any] | None = None

    def resolve(self, timeout: float | None = None) -> ActorRef[Any]:
        """The current actor; waits (bounded) while a restart is in progress."""
        cached = self._cached
        if cached is not None and cached.is_alive():
            return cached
        wait = self.lookup_timeout if timeout is None else timeout
        ref = self._directory.resolve(
            self.child_id, wait, not_urn=cached.actor_urn if cached is not None else None
        )
        self._cached = ref
        return ref

    def tell(self, message: Any) -> None:
        """Deliver ``message`` to the current incarnation (waiting briefly across a restart)."""
        deadline = time.monotonic() + self.lookup_timeout
        while True:
            ref = self.resolve(_remaining(deadline, self.child_id, self.lookup_timeout))
            try:
                ref.tell(message)
                return
            except ActorDeadError:
                continue  # died between lookup and send; the message was not queued

    def ask(self, message: Any, *, timeout: float) -> Any:
        """Send ``message`` and wait at most ``timeout`` s (lookup included) for the reply.

        Raises what the handler raised, :class:`AskTimeout`, or a lookup error.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = _remaining(deadline, self.child_id, timeout)
            ref = self.resolve(min(remaining, self.lookup_timeout))
            future = ref.ask(message, block=False)
            try:
                return future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                raise AskTimeout(self.child_id, timeout) from None
            except ActorDeadError as err:
                if ref.is_alive() or not str(err).endswith(_NEVER_HANDLED_SUFFIXES):
                    raise
                continue

    def proxy(self, timeout: float | None = None) -> ActorProxy[Any]:
        """A pykka proxy of the *current* incarnation (it goes stale after a restart)."""
        return self.resolve(timeout).proxy()

    def info(self) -> ChildInfo | None:
        return self._directory.get(self.child_id)

    def is_alive(self) -> bool:
        try:
            return self.resolve(0.0).is_alive()
        except Exception:
            return False

    def __repr__(self) -> str:
        return f"<NamedRef {self._directory.name}/{self.child_id}>"


def _remaining(deadline: float, child_id: str, timeout: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise NameLookupTimeout(child_id, timeout)
    return remaining
