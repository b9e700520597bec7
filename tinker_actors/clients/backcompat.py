"""The futures that the client-creation calls return, as in the official SDK 0.38.

``service.create_lora_training_client(...)`` (and ``create_training_client_from_state*``,
``create_sampling_client``, ``TrainingClient.save_weights_and_get_sampling_client`` /
``create_sampling_client``) returns at once a future whose result is the client: ``.result()`` in sync code,
``await future`` in async code. Code written for the SDK 0.6.3 used that return value as the client itself;
that still works, as in 0.38, and is deprecated there: these futures are also instances of the client's
class, and every public attribute of the client read (or set) on them is the client's, once it is ready,
with one :class:`~tinker_actors.call_style.DeprecatedCallWarning` per attribute name saying what to write
instead. Waiting for the client that way is a blocking call like ``.result()`` (refused on the I/O loop's
thread: :mod:`tinker_actors.call_style`), and an error of the creation surfaces at that first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tinker_actors.call_style import refuse_blocking, warn_deprecated
from tinker_actors.clients.sampling import SamplingClient
from tinker_actors.clients.training import TrainingClient
from tinker_actors.futures import APIFuture

__all__ = ["BackcompatClientFuture", "BackcompatSamplingClientFuture", "BackcompatTrainingClientFuture"]

C = TypeVar("C")
F = TypeVar("F")

_OWN = frozenset(dir(APIFuture)) | {"request_id"}
"""What the future answers itself (its APIFuture API); every other public name is the client's."""


class BackcompatClientFuture(APIFuture[C]):
    """A future of a client that can also be used, deprecated, as the client (``.result()`` / ``await`` it)."""

    __slots__ = ()

    _client_name = "client"

    def _client_for(self, name: str) -> C:
        """The client, for a use of its attribute ``name`` on this future: warns once per class and name."""
        what = self._warn_use(name)
        if not self._future.done():
            refuse_blocking(f"Using the future of a client-creation call as the {what} (.{name})",
                            "Await the future to get the client, and use that.")
        return self.result()

    async def _client_async(self, name: str) -> C:
        """The client, for a use of its coroutine method ``name`` on this future: awaited, never blocking."""
        self._warn_use(name)
        return await self.result_async()

    def _warn_use(self, name: str) -> str:
        """Warn (once per class and name) that the future is used as the client; the client's kind."""
        what = self._client_name
        warn_deprecated(f"Using the future that a client-creation call returns as the {what} (.{name} on a "
                        f"{type(self).__name__})", f"call .result() (or await it) to get the client, then .{name}")
        return what

    def __getattr__(self, name: str) -> Any:
        # The client's instance attributes (its class does not show them). Private and dunder names are never
        # forwarded: pickle, copy and the like probe for those.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._client_for(name), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._client_for(name), name, value)

    def __repr__(self) -> str:
        future = self._future
        if not future.done():
            state = "pending"
        elif future.cancelled():
            state = "cancelled"
        elif (error := future.exception()) is not None:
            state = f"failed: {error!r}"
        else:
            state = repr(future.result())
        return f"<{type(self).__name__}: {state}>"


class _Forwarded:
    """A public attribute of the client class on the future's class: read or set on the client (deprecated)."""

    def __init__(self, client_class: type, name: str) -> None:
        self._client_class = client_class
        self._name = name

    def __get__(self, future: BackcompatClientFuture[Any] | None, owner: type | None = None) -> Any:
        if future is None:  # on the class: the client's own (its signature and docs, for introspection)
            return getattr(self._client_class, self._name)
        return getattr(future._client_for(self._name), self._name)

    def __set__(self, future: BackcompatClientFuture[Any], value: Any) -> None:
        setattr(future._client_for(self._name), self._name, value)


def _forwarding(client_class: type) -> Callable[[type[F]], type[F]]:
    """Forward every public attribute of ``client_class`` (a base of the decorated future class, so that the
    future is an instance of it) that the future does not answer itself (its APIFuture API, and what the future
    class defines: coroutine methods that await the client instead of blocking for it)."""

    def decorate(future_class: type[F]) -> type[F]:
        for name in dir(client_class):
            if not name.startswith("_") and name not in _OWN and name not in vars(future_class):
                setattr(future_class, name, _Forwarded(client_class, name))
        return future_class

    return decorate


@_forwarding(TrainingClient)
class BackcompatTrainingClientFuture(BackcompatClientFuture[TrainingClient], TrainingClient):
    """What ``create_lora_training_client`` and ``create_training_client_from_state*`` return: a future of the
    TrainingClient (``.result()``, ``await``), also usable as the client (deprecated)."""

    __slots__ = ()

    _client_name = "TrainingClient"


@_forwarding(SamplingClient)
class BackcompatSamplingClientFuture(BackcompatClientFuture[SamplingClient], SamplingClient):
    """What ``create_sampling_client`` and ``save_weights_and_get_sampling_client`` return: a future of the
    SamplingClient (``.result()``, ``await``), also usable as the client (deprecated; pickling it pickles the
    client)."""

    __slots__ = ()

    _client_name = "SamplingClient"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self._client_for("__reduce__").__reduce__()

    async def get_base_model_async(self) -> str:
        """The client's :meth:`~SamplingClient.get_base_model_async`, once the client is ready (awaited)."""
        client = await self._client_async("get_base_model_async")
        return await client.get_base_model_async()
