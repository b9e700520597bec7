"""The root tree's named slots, and the registry through which other modules fill them.

The runtime owns the tree; the modules that own the actors (session manager, telemetry reporter,
grad-norm tracker) register a factory for their slot at import time::

    from tinker_actors.runtime.slots import register_slot

    register_slot("telemetry_reporter",
                  lambda rt: ChildSpec("telemetry_reporter", partial(TelemetryReporter.start, rt.ioloop)))

The runtime calls the factory when it starts (so a runtime created later sees the registration),
and uses a :class:`PlaceholderActor` for a slot nobody filled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from supervisors import ChildSpec, Restart
from tinker_actors.runtime.placeholders import PlaceholderActor

if TYPE_CHECKING:
    from tinker_actors.runtime.runtime import Runtime

__all__ = ["ROOT_SLOTS", "SlotFactory", "placeholder_spec", "register_slot", "registered_slots",
           "unregister_slot"]

ROOT_SLOTS: tuple[str, ...] = ("token_keepers", "session_manager", "telemetry_reporter", "grad_norm_tracker")
"""Slot names in start order (the root stops them in reverse order, after the services). The token keepers
come first: heartbeats and the last telemetry flush still send their tokens while they stop."""

SlotFactory = Callable[["Runtime"], ChildSpec]
"""Builds the child spec of a slot for a given runtime; the spec's id must be the slot name."""

_lock = threading.Lock()
_factories: dict[str, SlotFactory] = {}


def register_slot(slot: str, factory: SlotFactory) -> None:
    """Provide the actor for ``slot`` in every runtime started from now on (replaces an earlier one)."""
    if slot not in ROOT_SLOTS:
        raise ValueError(f"unknown root slot {slot!r}; the slots are {ROOT_SLOTS}")
    with _lock:
        _factories[slot] = factory


def unregister_slot(slot: str) -> None:
    with _lock:
        _factories.pop(slot, None)


def registered_slots() -> dict[str, SlotFactory]:
    with _lock:
        return dict(_factories)


def placeholder_spec(slot: str) -> ChildSpec:
    return ChildSpec(slot, partial(PlaceholderActor.start, slot), restart=Restart.PERMANENT, shutdown=2.0)
