"""TensorData: a flat, typed array on the wire, with numpy (and optional torch) conversion (FEATURES D3).

Only two dtypes exist on the wire: ``int64`` and ``float32``. Conversions:

* numpy: floating kinds -> ``float32``; signed and unsigned integer kinds -> ``int64`` (unsigned values
  above the int64 range are an error); anything else (bool, complex, object) is an error.
* torch (when installed): floating dtypes (incl. bfloat16) -> ``float32``, integer dtypes -> ``int64``;
  bool and complex are an error (the official SDK silently sends bools as int64; we refuse, as bool
  inputs are almost always a mistake in a loss input).

Floating values keep the precision they came with on the wire, as the official SDK sends them: a float64
``0.1`` under a ``float32`` tensor is written ``0.1``, not ``0.10000000149011612`` (its float32 value
printed as a double). The server reads both as the same float32; the JSON is the official SDK's, and shorter.

NaN and infinities are allowed in a TensorData (responses may carry them), but a training call refuses
them before anything is sent (:meth:`TensorData.first_non_finite` finds them).

Built from numpy (``from_numpy``, ``from_torch``) or read from the 0.38 wire, a TensorData holds a
read-only flat numpy array and makes the list ``data`` only when it is read (then once); ``to_numpy``
returns that array without copying when it already has the wire dtype. Built from a list, it holds the
list (see ``types/_array_backed.py``).

Sparse tensors (protocol 0.38): a 2-D tensor may be sent as compressed sparse rows, ``data`` holding only
the listed values, ``sparse_crow_indices`` / ``sparse_col_indices`` their row pointers and columns, and
``shape`` the dense shape (``types/sparse_csr.py`` has the rules). Every other entry takes the
``pad_value`` given to ``to_numpy`` (0 by default), as in the official SDK. ``from_torch_sparse`` and
``from_numpy_sparse`` compress a dense 2-D tensor when that is smaller; the indices, too, are held as
arrays when built from numpy or read from the wire. Protocol 0.6.3 has no sparse form: its codec sends
such a tensor dense.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pydantic
from pydantic import ConfigDict, TypeAdapter, model_validator

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._array_backed import ArrayBacked, listed
from tinker_actors.types._base import RequestModel
from tinker_actors.types.sparse_csr import CsrArrays, check_csr, compress, densify, pad_value_of

if TYPE_CHECKING:
    import torch

__all__ = ["TensorData", "TensorDtype", "first_non_finite"]

TensorDtype = Literal["int64", "float32"]

def _list_of(array: npt.NDArray[Any]) -> list[Any]:
    values: list[Any] = array.tolist()
    return values


# The numbers were validated on the way in; serializing them as a plain list skips pydantic's per-element
# union check (list[int] | list[float]), which is most of the cost of encoding a big batch. A held array
# is written as its list.
_FlatNumbers = Annotated[list[int] | list[float], listed(_list_of)]
_Indices = Annotated[list[int] | None, listed(_list_of)]
_SPARSE_FIELDS = ("sparse_crow_indices", "sparse_col_indices")

_NUMPY_DTYPES: dict[str, type[np.generic]] = {"int64": np.int64, "float32": np.float32}
_STRICT_FLOATS: TypeAdapter[list[float]] = TypeAdapter(list[float], config=ConfigDict(strict=True))
_INT64_LE = np.dtype("<i8")
# Shorter int lists are validated as lists: cheaper than an array whose list is likely made anyway.
_HELD_FROM = 256


def _wire_dtype_for_numpy(dtype: np.dtype[Any]) -> TensorDtype:
    if dtype.kind == "f":
        return "float32"
    if dtype.kind in ("i", "u"):
        return "int64"
    raise InvalidInputError(
        f"unsupported numpy dtype {dtype}: loss inputs must be floating point (sent as float32) "
        "or integer (sent as int64)")


def _owned_read_only(flat: npt.NDArray[Any], source: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``flat`` as an array no one else can change: copied if it may share the caller's memory."""
    if np.may_share_memory(flat, source):
        flat = flat.copy()
    flat.flags.writeable = False
    return flat


class TensorData(RequestModel, ArrayBacked):
    """A flattened row-major tensor: ``data``, ``dtype`` and an optional ``shape``."""

    _array_views: ClassVar[dict[str, Any]] = {"data": _list_of, "sparse_crow_indices": _list_of,
                                              "sparse_col_indices": _list_of}

    data: _FlatNumbers
    dtype: TensorDtype
    shape: list[int] | None = None
    sparse_crow_indices: _Indices = None
    """Protocol 0.38: the row pointers of a sparse (CSR) tensor (``rows + 1`` offsets into ``data``)."""
    sparse_col_indices: _Indices = None
    """Protocol 0.38: the column of each value of a sparse tensor (sorted and distinct within a row)."""

    @model_validator(mode="after")
    def _check_shape(self) -> TensorData:
        # Also runs when a built TensorData is put in a Datum: size, not len(data), so that a held
        # array is not made into a list.
        crow, col = (self._index_array(name) for name in _SPARSE_FIELDS)
        if crow is not None or col is not None:
            if crow is None or col is None:
                raise ValueError("sparse_crow_indices and sparse_col_indices are set together (a CSR tensor)")
            problem = check_csr(self.size, crow, col, self.shape)
            if problem is not None:
                raise ValueError(problem)
            return self
        if self.shape is not None:
            if any(d < 0 for d in self.shape):
                raise ValueError(f"shape {self.shape} has a negative dimension")
            if math.prod(self.shape) != self.size:
                raise ValueError(f"shape {self.shape} holds {math.prod(self.shape)} values "
                                 f"but data has {self.size}")
        return self

    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any]) -> TensorData:
        """Wrap a numpy array (any shape); see the module docstring for the dtype rules.

        The values are copied once (a later change to ``array`` does not change the tensor) and not
        turned into a list until ``data`` is read.
        """
        array = np.asarray(array)
        dtype = _wire_dtype_for_numpy(array.dtype)
        if dtype == "int64" and array.dtype.kind == "u" and array.size and \
                int(array.max()) > np.iinfo(np.int64).max:
            raise InvalidInputError("unsigned values above the int64 range cannot be sent")
        if dtype == "float32":
            # Not cast to float32: the values go out with their own precision (module docstring);
            # only extended precision, which has no JSON form, becomes float64.
            flat = (array.astype(np.float64) if array.dtype.itemsize > 8 else array).ravel()
        else:
            flat = array.astype(np.int64, copy=False).ravel()
        return cls.from_flat_array(_owned_read_only(flat, array), dtype, list(array.shape))

    @classmethod
    def from_flat_array(cls, flat: npt.NDArray[Any], dtype: TensorDtype, shape: list[int] | None) -> TensorData:
        """A tensor holding ``flat`` as it is (no copy, no check): for callers that made the array
        themselves (a 1-D array of a numeric dtype that fits ``dtype``, ``shape`` holding its size, and
        read-only or theirs alone), such as a codec reading the wire."""
        if shape is None:  # left unset, as a flat tensor from the wire was on the sender's side
            return cls._with_arrays({"data": flat}, dtype=dtype)
        return cls._with_arrays({"data": flat}, dtype=dtype, shape=shape)

    @classmethod
    def from_csr_arrays(cls, values: npt.NDArray[Any], crow: npt.NDArray[Any], col: npt.NDArray[Any],
                        dtype: TensorDtype, shape: list[int]) -> TensorData:
        """A sparse tensor holding these arrays as they are (no copy, no check; see :meth:`from_flat_array`):
        for callers that checked the layout (``sparse_csr.check_csr``), such as a codec reading the wire."""
        return cls._with_arrays({"data": values, "sparse_crow_indices": crow, "sparse_col_indices": col},
                                dtype=dtype, shape=shape)

    @classmethod
    def from_numpy_sparse(cls, array: npt.NDArray[Any], pad_value: int = 0) -> TensorData:
        """A 2-D array as a sparse (CSR) tensor of the entries that differ from ``pad_value``, when that is
        smaller than the dense form (as the official ``from_torch_sparse`` decides); else :meth:`from_numpy`.
        ``pad_value`` must be an integer (``TypeError`` otherwise)."""
        pad = pad_value_of(pad_value)
        array = np.asarray(array)
        if array.ndim != 2:
            return cls.from_numpy(array)
        values, crow, col = compress(array, pad)
        if crow.size + 2 * values.size >= array.size:  # CSR would not be smaller
            return cls.from_numpy(array)
        dense_values = cls.from_numpy(values)  # the dtype rules of from_numpy, and a copy it owns
        flat = dense_values.held_array()
        assert flat is not None
        crow.flags.writeable = col.flags.writeable = False
        return cls.from_csr_arrays(flat, crow, col, dense_values.dtype, list(array.shape))

    @classmethod
    def from_torch_sparse(cls, tensor: torch.Tensor, pad_value: int = 0) -> TensorData:
        """A 2-D torch tensor as a sparse tensor (see :meth:`from_numpy_sparse`; the dtype rules of
        :meth:`from_torch`). 0.38's ``Datum`` does this for 2-D torch ``target_tokens`` and ``weights``."""
        pad = pad_value_of(pad_value)
        if tensor.ndim != 2:
            return cls.from_torch(tensor)
        dense = cls.from_torch(tensor)
        return cls.from_numpy_sparse(dense.to_numpy(), pad)

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> TensorData:
        """Wrap a torch tensor (moved to CPU, detached)."""
        import torch

        if tensor.dtype == torch.bool or tensor.is_complex():
            raise InvalidInputError(f"unsupported torch dtype {tensor.dtype} for a loss input")
        detached = tensor.detach().cpu()
        if detached.dtype == torch.float64:
            return cls.from_numpy(detached.numpy())  # its own precision on the wire, as numpy float64
        if detached.is_floating_point():
            return cls.from_numpy(detached.to(torch.float32).numpy())  # exact for half and bfloat16
        return cls.from_numpy(detached.to(torch.int64).numpy())

    @classmethod
    def from_list(cls, values: list[int] | list[float], dtype: TensorDtype) -> TensorData:
        """A 1-D tensor from a plain list (``shape`` set to ``[len(values)]``, as the official SDK does)."""
        if len(values) >= _HELD_FROM and type(values[0]) is int:
            # Ints: read once by struct, which checks them as it packs them into an int64 array (what the
            # 0.38 wire sends); the list, when read, is the same ints. Anything struct will not take as an
            # int64 (a big int, a float, text) is left to the field's rules below.
            try:
                packed = struct.pack(f"<{len(values)}q", *values)
            except (struct.error, OverflowError):
                pass
            else:
                return cls.from_flat_array(np.frombuffer(packed, dtype=_INT64_LE), dtype, [len(values)])
        if values and type(values[0]) is float:
            # Floats: the field's union would try list[int] first and fail on every value (most of the
            # cost). When strict list[float] takes the list, the union picks that member anyway.
            try:
                checked = _STRICT_FLOATS.validate_python(values)
            except pydantic.ValidationError:
                pass
            else:
                return cls.model_construct(data=checked, dtype=dtype, shape=[len(checked)])
        return cls(data=values, dtype=dtype, shape=[len(values)])

    def held_array(self) -> npt.NDArray[Any] | None:
        """The flat, read-only numpy array this tensor holds (in the dtype it was given, which may be
        wider than the wire dtype), or None when it holds a list."""
        return self._held_array("data")

    @property
    def is_sparse(self) -> bool:
        """Whether this is a sparse (CSR) tensor (protocol 0.38)."""
        return self.__dict__.get("sparse_crow_indices") is not None

    def csr_arrays(self) -> CsrArrays | None:
        """``(values, crow_indices, col_indices)`` of a sparse tensor as numpy arrays (the held ones, no list
        made), or None for a dense tensor."""
        crow, col = (self._index_array(name) for name in _SPARSE_FIELDS)
        if crow is None or col is None:
            return None
        held = self.held_array()
        values = held if held is not None else np.asarray(self.data, dtype=_NUMPY_DTYPES[self.dtype])
        return values, crow, col

    def _index_array(self, name: str) -> npt.NDArray[np.int64] | None:
        held = self._held_array(name)
        if held is not None:
            return held.astype(np.int64, copy=False)
        value = self.__dict__.get(name)
        return None if value is None else np.asarray(value, dtype=np.int64)

    def to_numpy(self, pad_value: int = 0) -> npt.NDArray[Any]:
        """A numpy array of the wire dtype, reshaped when ``shape`` is known.

        When the tensor holds an array of the wire dtype, this is a read-only view of it (no copy);
        otherwise a new array. A sparse tensor is made dense, with ``pad_value`` (an integer) in every entry
        it does not list.
        """
        wire_dtype = _NUMPY_DTYPES[self.dtype]
        csr = self.csr_arrays() if self.is_sparse else None
        if csr is not None:
            assert self.shape is not None  # checked when the tensor was made
            values, crow, col = csr
            return densify(values.astype(wire_dtype, copy=False), crow, col, self.shape, pad_value_of(pad_value),
                           np.dtype(wire_dtype))
        held = self.held_array()
        if held is None:
            array = np.asarray(self.data, dtype=wire_dtype)
        else:
            array = held if held.dtype == wire_dtype else held.astype(wire_dtype)
        if self.shape is not None:
            array = array.reshape(self.shape)
        return array

    def to_torch(self, pad_value: int = 0) -> torch.Tensor:
        """A torch tensor (needs the ``torch`` extra); a sparse tensor is made dense (see :meth:`to_numpy`)."""
        try:
            import torch
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise InvalidInputError("to_torch needs torch: pip install 'tinker-actors[torch]'") from error
        return torch.from_numpy(self.to_numpy(pad_value).copy())

    def tolist(self, pad_value: int = 0) -> list[Any]:
        result: list[Any] = self.to_numpy(pad_value).tolist()
        return result

    @property
    def size(self) -> int:
        """How many values ``data`` holds (of a sparse tensor: the listed ones)."""
        held = self.held_array()
        return held.size if held is not None else len(self.data)

    def first_non_finite(self) -> int | None:
        """The index of the first NaN or infinity in the values, or None when every value is finite."""
        held = self.held_array()
        if held is None:
            return first_non_finite(self.data)
        if held.dtype.kind != "f":
            return None
        bad = np.flatnonzero(~np.isfinite(held))
        return int(bad[0]) if bad.size else None


def first_non_finite(values: list[int] | list[float]) -> int | None:
    """The index of the first NaN or infinity in ``values``, or None when every value is finite.

    Fast path: one C-level ``sum``, which is finite exactly when no value is NaN or infinite, unless finite
    values overflow it (then, and only to locate a culprit, a per-value scan).
    """
    try:
        if math.isfinite(sum(values)):
            return None
    except OverflowError:  # ints beyond the float range: not NaN either, scan below
        pass
    for index, value in enumerate(values):
        if isinstance(value, float) and not math.isfinite(value):
            return index
    return None
