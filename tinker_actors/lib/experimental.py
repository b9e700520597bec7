"""``tinker.lib.experimental`` of the official SDK 0.38: the same objects, re-exported."""

from tinker_actors.experimental_api import ExperimentalWarning, experimental

__all__ = ["ExperimentalWarning", "experimental"]
