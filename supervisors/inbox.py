"""An actor inbox that can be closed, so no message is silently lost when its actor ends.

pykka keeps a dead actor's inbox as a plain queue: tells left in it when the actor ends are dropped, and a
tell that passed ``ActorRef.tell``'s liveness check just before the end lands in a queue nobody reads again.
Either way the sender believes the message was delivered; a caller waiting on a reply carried inside that
message waits forever. :class:`ClosableInbox` closes both gaps:

* :meth:`ClosableInbox.close` takes everything queued, atomically, and hands it back to the ending actor,
  which answers every ask (``ActorDeadError``, as pykka does) and gives every tell to its
  ``on_undelivered`` hook;
* a put after the close never lands: a tell raises ``ActorDeadError`` to its sender (exactly what a tell to
  a dead actor raises, so a ``NamedRef`` sends it to the replacement) and an ask's reply fails with it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Final

from pykka import ActorDeadError
from pykka._envelope import Envelope

__all__ = ["WAKE", "ClosableInbox"]


class _Wake:
    """Queued by :meth:`ClosableInbox.close`: an actor thread blocked on its empty inbox wakes up and sees
    it was stopped (an actor abandoned by its supervisor is closed from another thread). Handled as nothing."""

    def __repr__(self) -> str:
        return "WAKE"


WAKE: Final = _Wake()


class ClosableInbox(queue.Queue[Envelope[Any]]):
    """A FIFO inbox; after :meth:`close` every put is refused as to a dead actor."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = threading.Lock()  # orders puts against close: a message is either drained or refused
        self._closed_for: str | None = None

    def put(self, item: Envelope[Any], block: bool = True, timeout: float | None = None) -> None:
        with self._gate:
            closed_for = self._closed_for
            if closed_for is None:
                super().put(item, block, timeout)  # unbounded: never blocks, so holding the gate is brief
                return
        error = ActorDeadError(f"{closed_for} not found")
        if item.reply_to is None:
            raise error
        item.reply_to.set_exception(exc_info=(ActorDeadError, error, None))

    def close(self, owner: str) -> list[Envelope[Any]]:
        """Refuse every later put and return what was queued, oldest first. Only the first call drains."""
        with self._gate:
            if self._closed_for is not None:
                return []
            self._closed_for = owner
            drained: list[Envelope[Any]] = []
            while True:
                try:
                    envelope = self.get_nowait()
                except queue.Empty:
                    break
                if envelope.message is not WAKE:
                    drained.append(envelope)
            super().put(Envelope(WAKE))  # past the gate: a thread waiting in get() must see the stop
            return drained

    @property
    def closed(self) -> bool:
        return self._closed_for is not None
