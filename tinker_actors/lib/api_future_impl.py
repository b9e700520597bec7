"""``tinker.lib.api_future_impl`` of the official SDK 0.6.3: its queue-state names, re-exported."""

from tinker_actors.clients.queue_state import QueueState, QueueStateObserver

__all__ = ["QueueState", "QueueStateObserver"]
