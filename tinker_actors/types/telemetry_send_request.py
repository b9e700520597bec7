"""``tinker.types.telemetry_send_request`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.telemetry import TelemetrySendRequest

__all__ = ["TelemetrySendRequest"]
