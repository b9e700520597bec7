"""``tinker.types.generic_event`` of the official SDK 0.6.3: the same objects, re-exported."""

from tinker_actors.types.telemetry import GenericEvent

__all__ = ["GenericEvent"]
