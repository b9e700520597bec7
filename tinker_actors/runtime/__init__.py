"""The process-wide runtime: IoLoop (asyncio in a daemon thread) and the root supervision tree."""

from tinker_actors.runtime.ioloop import Handle, IoLoop, IoLoopStoppedError, Outcome
from tinker_actors.runtime.placeholders import PlaceholderActor
from tinker_actors.runtime.runtime import Runtime, RuntimeStoppedError
from tinker_actors.runtime.slots import ROOT_SLOTS, SlotFactory, register_slot, unregister_slot

__all__ = [
    "ROOT_SLOTS",
    "Handle",
    "IoLoop",
    "IoLoopStoppedError",
    "Outcome",
    "PlaceholderActor",
    "Runtime",
    "RuntimeStoppedError",
    "SlotFactory",
    "register_slot",
    "unregister_slot",
]
