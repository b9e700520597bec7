"""Public methods name themselves on the wire (``x-sdk-method``, protocol 0.38), as the official SDK's do.

:func:`names_sdk_methods` wraps each public method of a client class so that the requests it makes, and
those of the work it starts in the IoLoop (which runs in a copy of the caller's context), carry
``x-sdk-method: <Class>.<method>``. The header itself is added by the HTTP layer
(:func:`tinker_actors.http.headers.call_headers`), only when the negotiated protocol sends it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tinker_actors.http.headers import sdk_method

__all__ = ["names_sdk_methods"]

C = TypeVar("C", bound=type)

_WRAPPED = "__tinker_sdk_method_wrapped__"


def names_sdk_methods(cls: C) -> C:
    """Wrap each public plain or ``async`` method defined by ``cls`` (idempotent). Returns ``cls``."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member) or getattr(member, _WRAPPED, False):
            continue
        qualified = f"{cls.__name__}.{name}"
        wrapper = _wrap_async(member, qualified) if inspect.iscoroutinefunction(member) \
            else _wrap_sync(member, qualified)
        setattr(wrapper, _WRAPPED, True)
        setattr(cls, name, wrapper)
    return cls


def _wrap_sync(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sdk_method(name):
            return fn(*args, **kwargs)

    return wrapper


def _wrap_async(fn: Callable[..., Coroutine[Any, Any, Any]], name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sdk_method(name):
            return await fn(*args, **kwargs)

    return wrapper
