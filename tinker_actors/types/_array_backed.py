"""Models whose big list fields may be held as numpy arrays, the Python list made on first read.

Why: a 256 x 2048-token batch holds about a million numbers. Making Python lists of them (or numpy
arrays of those lists) costs more than everything else about encoding or decoding it, and the 0.38
wire carries them as packed bytes that numpy reads and writes without lists. So a model built from
numpy (or from the wire) keeps the array; code written for lists still reads lists.

How: a field named in ``_array_views`` may be held as an array. It is then absent
from the instance ``__dict__``, so reading it falls through to ``__getattr__``, which makes the list
(``_array_views[name](array)``), caches it in ``__dict__`` (in field order, as pydantic keeps it) and
remembers it. The array stays the truth for as long as ``__dict__`` holds that very list
(``model_copy(update=...)`` putting another list there makes the list the truth). What reads
``__dict__`` as a whole (serialization, equality, iteration, repr, hashing) makes the lists first, so
JSON, comparisons and reprs are what they were with lists; copies and pickles keep the arrays.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy.typing as npt
import pydantic
from pydantic import SerializerFunctionWrapHandler, model_serializer

__all__ = ["ArrayBacked"]

# Making a list is rare (once per field of an instance, if ever): one lock for all keeps two threads
# from caching two different lists for the same field.
_MATERIALIZE_LOCK = threading.Lock()


_REQUIRED = object()


@functools.cache
def _field_template(cls: type[pydantic.BaseModel]) -> tuple[dict[str, Any], frozenset[str]]:
    """Each field of ``cls`` in order with its default (``_REQUIRED`` when it has none), and the required names."""
    defaults: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        if field.default_factory is not None:
            raise TypeError(f"{cls.__name__}.{name}: array-backed models take plain defaults only")
        defaults[name] = _REQUIRED if field.is_required() else field.default
    return defaults, frozenset(name for name, default in defaults.items() if default is _REQUIRED)


class ArrayBacked(pydantic.BaseModel):
    """Mixin (listed after the model's base): fields of ``_array_views`` may be held as numpy arrays."""

    # The arrays and the lists made from them live in ``__pydantic_private__`` (pydantic copies, pickles and
    # deep-copies it) under the keys "arrays" and "views", but are not declared as private attributes:
    # a model validated from JSON (lists) then has no private state to set up, which costs nothing.
    _array_views: ClassVar[Mapping[str, Callable[[npt.NDArray[Any]], list[Any]]]] = {}

    @classmethod
    def _with_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], **values: Any) -> Self:
        """An instance whose ``arrays`` fields are held as arrays and the others set to ``values`` or
        their defaults, not validated (the caller vouches for them, as with ``model_construct``, which
        this does more cheaply). Every field given is "set"."""
        template, required = _field_template(cls)
        missing = required.difference(values, arrays)
        if missing:
            raise TypeError(f"{cls.__name__} needs {', '.join(sorted(missing))}")
        fields = template.copy()  # in field order, as pydantic keeps __dict__ (and serializes it)
        fields.update(values)
        for name in arrays:
            del fields[name]
        model = cls.__new__(cls)
        object.__setattr__(model, "__dict__", fields)
        object.__setattr__(model, "__pydantic_fields_set__", {*arrays, *values})
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", {"arrays": dict(arrays), "views": None} if arrays else None)
        return model

    def _held_array(self, name: str) -> npt.NDArray[Any] | None:
        """The array behind field ``name`` while it is the truth, else None (the field holds a list)."""
        private = self.__pydantic_private__
        arrays: dict[str, npt.NDArray[Any]] | None = private.get("arrays") if private else None
        if not arrays or name not in arrays:
            return None
        if name in self.__dict__:
            views = private.get("views") if private else None
            if views is None or self.__dict__[name] is not views.get(name):
                return None
        return arrays[name]

    def _materialize(self, name: str) -> Any:
        """The list of field ``name`` (made from its array and cached, the first time)."""
        with _MATERIALIZE_LOCK:
            current = self.__dict__
            if name in current:
                return current[name]
            private = self.__pydantic_private__
            assert private is not None
            values = self._array_views[name](private["arrays"][name])
            # Replaced, not mutated: copies made with copy() share the old dicts.
            private["views"] = {**(private["views"] or {}), name: values}
            ordered = {field: current.get(field, values)
                       for field in type(self).model_fields if field in current or field == name}
            ordered.update((key, value) for key, value in current.items() if key not in ordered)
            object.__setattr__(self, "__dict__", ordered)
            return values

    def _materialize_all(self) -> None:
        private = self.__pydantic_private__
        arrays = private.get("arrays") if private else None
        if arrays:
            for name in arrays:
                if name not in self.__dict__:
                    self._materialize(name)

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:
            if name in self._array_views:
                private = object.__getattribute__(self, "__pydantic_private__")
                arrays = private.get("arrays") if private else None
                if arrays and name in arrays:
                    return self._materialize(name)
            return super().__getattr__(name)

    @model_serializer(mode="wrap")
    def _serialize_lists(self, handler: SerializerFunctionWrapHandler) -> Any:
        self._materialize_all()
        return handler(self)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, pydantic.BaseModel):
            return NotImplemented
        if type(self) is not type(other):
            return False
        self._materialize_all()
        if isinstance(other, ArrayBacked):
            other._materialize_all()
        return self.__dict__ == other.__dict__ and (self.__pydantic_extra__ or {}) == (other.__pydantic_extra__ or {})

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # Frozen models get a __hash__ over __dict__ from pydantic: make the lists first there too.
        field_hash = cls.__hash__
        if field_hash is not None and not getattr(field_hash, "_materializes", False):
            def __hash__(self: ArrayBacked) -> int:
                self._materialize_all()
                return field_hash(self)

            __hash__._materializes = True  # type: ignore[attr-defined]
            cls.__hash__ = __hash__  # type: ignore[method-assign,assignment]

    def __iter__(self) -> Generator[tuple[str, Any], None, None]:
        self._materialize_all()
        yield from super().__iter__()

    def __repr_args__(self) -> Generator[tuple[str | None, Any], None, None]:
        self._materialize_all()
        yield from super().__repr_args__()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        if update and not update.keys().isdisjoint(self._array_views):
            self._materialize_all()  # so that the update replaces the list in place, in field order
        return super().model_copy(update=update, deep=deep)
