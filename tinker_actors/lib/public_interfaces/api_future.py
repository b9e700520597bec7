"""``tinker.lib.public_interfaces.api_future`` of the official SDK 0.6.3.

The official SDK has an abstract ``APIFuture`` and a concrete ``AwaitableConcurrentFuture`` wrapping a
``concurrent.futures.Future``; here one class is both (``APIFuture(concurrent_future)`` wraps one), so the
second name is the same class.
"""

from tinker_actors.futures import APIFuture

AwaitableConcurrentFuture = APIFuture

__all__ = ["APIFuture", "AwaitableConcurrentFuture"]
