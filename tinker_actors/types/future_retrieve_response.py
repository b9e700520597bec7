"""``tinker.types.future_retrieve_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.aliases import FutureRetrieveResponse

__all__ = ["FutureRetrieveResponse"]
