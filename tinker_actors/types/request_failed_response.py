"""``tinker.types.request_failed_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.futures import RequestFailedResponse

__all__ = ["RequestFailedResponse"]
