"""The futures of clients that the official SDK 0.38's factory calls return, as types here.

In 0.38, ``create_lora_training_client(...)`` / ``create_sampling_client(...)`` return a future whose result
is the client; using that future as the client itself still works there, with a deprecation warning.
These classes are that: an :class:`~tinker_actors.futures.APIFuture` of the client (``.result()``,
``await``), which forwards any other attribute to the client once it is ready, warning once per name with
the replacement. Our factory calls still return the client itself (their ``*_future`` variants return an
``APIFuture``); these exist for 0.38 code that names them (type hints, ``isinstance``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from tinker_actors.clients.sampling import SamplingClient
from tinker_actors.clients.training import TrainingClient
from tinker_actors.futures import APIFuture

__all__ = ["BackcompatClientFuture", "BackcompatSamplingClientFuture", "BackcompatTrainingClientFuture"]

C = TypeVar("C")
F = TypeVar("F")

_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def _forwarded(future: APIFuture[Any], name: str) -> Any:
    """``name`` of the future's client, once it is ready; the first use of each name per class warns."""
    what = type(future).__name__
    with _WARNED_LOCK:
        first = (what, name) not in _WARNED
        _WARNED.add((what, name))
    if first:
        warnings.warn(f"using the future a factory call returned as the client ({what}.{name}) is "
                      f"deprecated: call .result() (or await it) to get the client, then .{name}",
                      DeprecationWarning, stacklevel=3)
    return getattr(future.result(), name)


class _ForwardedToClient:
    """A public attribute of the client class, on the future's class (so that it is part of its API)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, future: APIFuture[Any] | None, owner: type | None = None) -> Any:
        return self if future is None else _forwarded(future, self._name)


def _forwarding(client_class: type) -> Callable[[type[F]], type[F]]:
    """Gives the decorated future class every public attribute of ``client_class`` it lacks, forwarded."""

    def decorate(future_class: type[F]) -> type[F]:
        for name in dir(client_class):
            if not name.startswith("_") and not hasattr(future_class, name):
                setattr(future_class, name, _ForwardedToClient(name))
        return future_class

    return decorate


class BackcompatClientFuture(APIFuture[C]):
    """A future of a client that also acts as the client (deprecated use: call ``.result()`` first)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Names of the client that its class does not show (set on the instance). Private and dunder names
        # are never forwarded (pickle, copy and the like probe for those).
        if name.startswith("_"):
            raise AttributeError(name)
        return _forwarded(self, name)


@_forwarding(TrainingClient)
class BackcompatTrainingClientFuture(BackcompatClientFuture[TrainingClient]):
    """What 0.38's ``create_lora_training_client`` (and the other training-client factories) return."""

    __slots__ = ()


@_forwarding(SamplingClient)
class BackcompatSamplingClientFuture(BackcompatClientFuture[SamplingClient]):
    """What 0.38's ``create_sampling_client`` (and ``save_weights_and_get_sampling_client``) return."""

    __slots__ = ()
