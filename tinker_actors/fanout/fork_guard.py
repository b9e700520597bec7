"""Notice a process that was ``fork()``-ed after the runtime started, and refuse to run there.

The runtime's threads (the IoLoop, the actors' threads) exist only in the process that started them; a
forked child inherits their objects but not the threads, so a call would wait for an answer nobody sends.
Each fork bumps a generation number in the child (``os.register_at_fork``); the runtime and every client
remember the generation they were made in, and a call from another generation raises
:class:`~tinker_actors.fanout.errors.ForkedProcessError` at once.
"""

from __future__ import annotations

import os

from tinker_actors.fanout.errors import ForkedProcessError

__all__ = ["fork_generation", "refuse_if_forked"]

_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def fork_generation() -> int:
    """How many ``fork()`` calls separate this process from the one that imported tinker_actors first."""
    return _generation


def refuse_if_forked(born: int, what: str) -> None:
    """Raise :class:`ForkedProcessError` when ``what`` was made in a process this one was forked from."""
    if born != _generation:
        raise ForkedProcessError(
            f"{what} was started in the process this one was fork()-ed from; its threads do not survive fork(). "
            "Start worker processes with the 'spawn' or 'forkserver' method (multiprocessing.get_context('spawn')) "
            "and give them the SamplingClient (pickled, or as get_sampler_handle()): docs/guides/fan_out.md")
