"""``tinker.types.future_retrieve_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.futures import FutureRetrieveRequest

__all__ = ["FutureRetrieveRequest"]
