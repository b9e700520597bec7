"""``tinker.types.telemetry_batch`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.telemetry import TelemetryBatch

__all__ = ["TelemetryBatch"]
