"""tinker-actors: a Tinker SDK built on supervised pykka actors."""

from tinker_actors._version import __version__

__all__ = ["__version__"]
