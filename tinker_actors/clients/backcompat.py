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
from typing import Any, TypeVar

from tinker_actors.clients.sampling import SamplingClient
from tinker_actors.clients.training import TrainingClient
from tinker_actors.futures import APIFuture

__all__ = ["BackcompatClientFuture", "BackcompatSamplingClientFuture", "BackcompatTrainingClientFuture"]

C = TypeVar("C")

_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


class BackcompatClientFuture(APIFuture[C]):
    """A future of a client that also acts as the client (deprecated use: call ``.result()`` first)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Only names the future lacks get here; private and dunder names are never forwarded (pickle,
        # copy and the like probe for those).
        if name.startswith("_"):
            raise AttributeError(name)
        what = type(self).__name__
        with _WARNED_LOCK:
            first = (what, name) not in _WARNED
            _WARNED.add((what, name))
        if first:
            warnings.warn(f"using the future a factory call returned as the client ({what}.{name}) is "
                          f"deprecated: call .result() (or await it) to get the client, then .{name}",
                          DeprecationWarning, stacklevel=2)
        return getattr(self.result(), name)


class BackcompatTrainingClientFuture(BackcompatClientFuture[TrainingClient]):
    """What 0.38's ``create_lora_training_client`` (and the other training-client factories) return."""

    __slots__ = ()


class BackcompatSamplingClientFuture(BackcompatClientFuture[SamplingClient]):
    """What 0.38's ``create_sampling_client`` (and ``save_weights_and_get_sampling_client``) return."""

    __slots__ = ()
