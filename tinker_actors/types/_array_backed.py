"""Models whose big list fields may hold numpy arrays, the Python list made on first read.

Why: a 256 x 2048-token batch holds about a million numbers. Making Python lists of them (or numpy
arrays of those lists) costs more than everything else about encoding or decoding it, and the 0.38
wire carries them as packed bytes that numpy reads and writes without lists. So a model built from
numpy (or from the wire) keeps the array; code written for lists still reads lists.

How: a field named in ``_array_views`` may hold a read-only array in the instance ``__dict__`` (where
pydantic keeps field values, in field order). Reading the field goes through a descriptor on the class,
which turns an array into its list (``_array_views[name](array)``) once, puts the list in its place and
remembers the array, which stays the truth for as long as ``__dict__`` holds that very list
(``model_copy(update=...)`` putting another list there makes the list the truth). Serialization goes
through the field's serializer (:func:`listed`), which writes an array as its list, so JSON is what it
was with lists; equality, iteration and repr make the lists first; copies and pickles keep the arrays.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pydantic
from pydantic import PlainSerializer

__all__ = ["ArrayBacked", "listed"]

View = Callable[[npt.NDArray[Any]], list[Any]]

# Making a list is rare (once per field of an instance, if ever): one lock for all keeps two threads
# from caching two different lists for the same field.
_MATERIALIZE_LOCK = threading.Lock()
_REQUIRED = object()


def listed(view: View, return_type: Any = Any) -> PlainSerializer:
    """The serializer of a field that may hold an array: the array as ``view`` makes it a list, anything
    else as it is (``return_type`` tells pydantic-core how to write the result)."""
    def serialize(value: Any) -> Any:
        return view(value) if isinstance(value, np.ndarray) else value

    return PlainSerializer(serialize, return_type=return_type)


@functools.cache
def _field_template(cls: type[pydantic.BaseModel]) -> tuple[dict[str, Any], frozenset[str]]:
    """Each field of ``cls`` in order with its default (``_REQUIRED`` when it has none), and the required names."""
    defaults: dict[str, Any] = {}
    for name, field in cls.__pydantic_fields__.items():
        if field.default_factory is not None:
            raise TypeError(f"{cls.__name__}.{name}: array-backed models take plain defaults only")
        defaults[name] = _REQUIRED if field.is_required() else field.default
    return defaults, frozenset(name for name, default in defaults.items() if default is _REQUIRED)


class _HeldField:
    """The class attribute of a field that may hold an array: reading it gives the list, made once."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: ArrayBacked | None, owner: type[Any]) -> Any:
        if instance is None:  # no class attribute, as for any pydantic field (pydantic looks for defaults so)
            raise AttributeError(self.name)
        try:
            value = instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{owner.__name__!r} object has no attribute {self.name!r}") from None
        if isinstance(value, np.ndarray):
            return instance._materialize(self.name)
        return value

    def __set__(self, instance: ArrayBacked, value: Any) -> None:
        # Only reached by object.__setattr__-style writes (pydantic's own __setattr__ runs first and
        # refuses on these frozen models); makes this a data descriptor, read before __dict__.
        instance.__dict__[self.name] = value


class ArrayBacked(pydantic.BaseModel):
    """Mixin (listed after the model's base): fields of ``_array_views`` may hold numpy arrays."""

    # The arrays whose lists were made, and those lists, live in ``__pydantic_private__`` (pydantic
    # copies, pickles and deep-copies it) under "arrays" and "views", but are not declared as private
    # attributes: a model validated from JSON (lists) then has no private state to set up.
    _array_views: ClassVar[Mapping[str, View]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name in cls._array_views:
            setattr(cls, name, _HeldField(name))

    @classmethod
    def _with_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]], **values: Any) -> Self:
        """An instance whose ``arrays`` fields hold those (read-only) arrays and the others ``values`` or
        their defaults, not validated (the caller vouches for them, as with ``model_construct``, which
        this does more cheaply). Every field given is "set"."""
        template, required = _field_template(cls)
        missing = required.difference(values, arrays)
        if missing:
            raise TypeError(f"{cls.__name__} needs {', '.join(sorted(missing))}")
        fields = template.copy()  # in field order, as pydantic keeps __dict__ (and serializes it)
        fields.update(values)
        fields.update(arrays)
        model = cls.__new__(cls)
        object.__setattr__(model, "__dict__", fields)
        object.__setattr__(model, "__pydantic_fields_set__", {*arrays, *values})
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", None)
        return model

    def _held_array(self, name: str) -> npt.NDArray[Any] | None:
        """The array behind field ``name`` while it is the truth, else None (the field holds a list)."""
        value = self.__dict__.get(name)
        if isinstance(value, np.ndarray):
            return value
        private = self.__pydantic_private__
        if private and value is not None and private["views"].get(name) is value:
            held: npt.NDArray[Any] = private["arrays"][name]
            return held
        return None

    def _materialize(self, name: str) -> Any:
        """The list of field ``name`` (made from its array and put in its place, the first time)."""
        with _MATERIALIZE_LOCK:
            array = self.__dict__[name]
            if not isinstance(array, np.ndarray):
                return array  # another thread made it
            values = self._array_views[name](array)
            private = self.__pydantic_private__ or {"arrays": {}, "views": {}}
            # Replaced, not mutated: copies made with copy() share the old dicts.
            object.__setattr__(self, "__pydantic_private__", {"arrays": {**private["arrays"], name: array},
                                                              "views": {**private["views"], name: values}})
            self.__dict__[name] = values  # same key, same place: the field order pydantic serializes in
            return values

    def _materialize_all(self) -> None:
        for name in self._array_views:
            if isinstance(self.__dict__.get(name), np.ndarray):
                self._materialize(name)

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

    def __iter__(self) -> Generator[tuple[str, Any], None, None]:
        self._materialize_all()
        yield from super().__iter__()

    def __repr_args__(self) -> Generator[tuple[str | None, Any], None, None]:
        self._materialize_all()
        yield from super().__repr_args__()
