"""``tinker.types.shared.untyped_api_future`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.futures import UntypedAPIFuture

__all__ = ["UntypedAPIFuture"]
