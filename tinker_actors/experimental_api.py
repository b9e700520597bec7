"""Marking APIs that are not stable yet, as the official SDK 0.38 does.

:class:`ExperimentalWarning` is a ``FutureWarning`` (shown to end users by default; silence it with
``warnings.filterwarnings("ignore", category=ExperimentalWarning)``). :data:`experimental` is the decorator
that marks such an API: ``@experimental("X is experimental: ...", category=ExperimentalWarning)``; each call
then warns, and type checkers report each use.
"""

from __future__ import annotations

from typing_extensions import deprecated

__all__ = ["ExperimentalWarning", "experimental"]


class ExperimentalWarning(FutureWarning):
    """A call to an API that may change or go away in any release."""


experimental = deprecated
"""``@experimental(message, category=ExperimentalWarning)``: the standard ``deprecated`` decorator (PEP 702),
so that type checkers see it."""
