"""``tinker.types.try_again_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.futures import TryAgainResponse

__all__ = ["TryAgainResponse"]
