"""``tinker.types.event_type`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.telemetry import EventType

__all__ = ["EventType"]
