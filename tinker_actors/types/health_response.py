"""``tinker.types.health_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.session import HealthResponse

__all__ = ["HealthResponse"]
