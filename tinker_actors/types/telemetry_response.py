"""``tinker.types.telemetry_response`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.telemetry import TelemetryResponse

__all__ = ["TelemetryResponse"]
