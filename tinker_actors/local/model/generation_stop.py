"""Stopping a generation between two tokens, and counting the tokens generated.

The service runs a sample on a worker thread; a ``cancel_future`` for it arrives on the service loop.
The generation loop calls :func:`token_step` once per decoding step: it adds the step's tokens to the
running :class:`GenerationControl` (set for the worker thread by :func:`controlled`) and raises
:class:`GenerationStopped` once that control was stopped, so a cancelled sample ends at its next token.
Without a control (the model used directly) the call costs one attribute lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["GenerationControl", "GenerationStopped", "controlled", "token_step"]

T = TypeVar("T")


class GenerationStopped(Exception):
    """The generation was stopped (its sample was cancelled) before it finished."""


class GenerationControl:
    """One sample's stop switch and token count; stopped from any thread."""

    def __init__(self, on_tokens: Callable[[int], None] | None = None) -> None:
        self._stop = threading.Event()
        self._on_tokens = on_tokens
        self.tokens = 0

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def step(self, tokens: int) -> None:
        self.tokens += tokens
        if self._on_tokens is not None:
            self._on_tokens(tokens)
        if self._stop.is_set():
            raise GenerationStopped("the generation was stopped")


_current = threading.local()


@contextmanager
def _using(control: GenerationControl) -> Iterator[None]:
    previous = getattr(_current, "control", None)
    _current.control = control
    try:
        yield
    finally:
        _current.control = previous


def controlled(control: GenerationControl, work: Callable[[], T]) -> T:
    """Run ``work`` on this thread under ``control``; :class:`GenerationStopped` at once if already stopped."""
    if control.stopped:
        raise GenerationStopped("the generation was stopped before it started")
    with _using(control):
        return work()


def token_step(tokens: int) -> None:
    """One decoding step produced ``tokens`` tokens; raises :class:`GenerationStopped` if stopped meanwhile."""
    control: GenerationControl | None = getattr(_current, "control", None)
    if control is not None:
        control.step(tokens)
