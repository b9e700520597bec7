"""The official SDK's queue-state hook: ``on_queue_state_change(queue_state)`` on the training and sampling
clients, called with a :class:`~tinker_actors.types.futures.QueueState` each time a poll of one of their
requests answers "pending" with a queue state (``paused_capacity``, ``paused_rate_limit``, ``active``).

The clients log paused states themselves (at most once every 5 minutes, :class:`QueueStateLog`); their
``on_queue_state_change`` does nothing more by default. To react, override it in a subclass or assign a
callable to it on one client (``training.on_queue_state_change = my_callback``). The callback runs on the
SDK's I/O thread: it must return quickly and not block; an exception from it is logged and dropped.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod

import structlog

from tinker_actors.futures import QueueStateLog
from tinker_actors.types.futures import QueueState

__all__ = ["ClientQueueLog", "QueueState", "QueueStateObserver"]

log = structlog.get_logger("tinker_actors.queue")


class QueueStateObserver(ABC):
    """Something told about the queue state of its pending requests (the official SDK's interface)."""

    @abstractmethod
    def on_queue_state_change(self, queue_state: QueueState) -> None:
        """Called with the queue state a poll of one of this object's requests reported."""


class ClientQueueLog(QueueStateLog):
    """A client's queue-state log that also hands each state to the client's ``on_queue_state_change``.

    Holds the client weakly: the client actor keeps this object, and must not keep its handle alive.
    """

    def __init__(self, what: str, client: QueueStateObserver, interval: float = 300.0) -> None:
        super().__init__(what, interval)
        self._label = what
        self._client = weakref.ref(client)

    def __call__(self, state: str, reason: str | None) -> None:
        super().__call__(state, reason)
        client = self._client()
        if client is None:
            return
        try:
            client.on_queue_state_change(QueueState.parse(state))
        except Exception as error:  # a user's callback must never break the polling of a request
            log.warning("queue.callback_failed", what=self._label, error=repr(error))
