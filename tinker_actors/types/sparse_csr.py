"""Compressed sparse rows (CSR) of a 2-D tensor, with numpy only: checks, densifying, and compressing.

A sparse ``TensorData`` (protocol 0.38) holds the listed values in ``data``, the row pointers in
``sparse_crow_indices`` (``rows + 1`` non-decreasing offsets from 0 to the number of values) and each
value's column in ``sparse_col_indices``, sorted and distinct within each row; ``shape`` is the dense
shape. Every entry that is not listed takes the ``pad_value`` given when the tensor is made dense (0 by
default). These are the official SDK's rules (it checks them with torch's CSR invariants).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CsrArrays", "check_csr", "compress", "densify", "pad_value_of"]

CsrArrays = tuple[npt.NDArray[Any], npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""``(values, crow_indices, col_indices)``."""


def pad_value_of(pad_value: object) -> int:
    """``pad_value`` if it is an integer (numpy integers too, bool not), as the official SDK requires: an
    integer shift is exact for int64 tensors. Else ``TypeError``."""
    if isinstance(pad_value, bool) or not isinstance(pad_value, int | np.integer):
        raise TypeError(f"pad_value must be an integer, got {type(pad_value).__name__}: {pad_value!r}")
    return int(pad_value)


def check_csr(values_count: int, crow: npt.NDArray[Any], col: npt.NDArray[Any], shape: list[int] | None) -> str | None:
    """What is wrong with a CSR layout of ``values_count`` values for the dense ``shape``, or None."""
    if shape is None or len(shape) != 2:
        return f"a sparse (CSR) tensor needs a 2-D dense shape, got {shape}"
    rows, cols = shape
    if rows < 0 or cols < 0:
        return f"shape {shape} has a negative dimension"
    if crow.ndim != 1 or crow.size != rows + 1:
        return f"sparse_crow_indices has {crow.size} entries, not rows + 1 = {rows + 1}"
    if col.ndim != 1 or col.size != values_count:
        return f"sparse_col_indices has {col.size} entries but data has {values_count} values"
    if crow[0] != 0 or crow[-1] != values_count or np.any(np.diff(crow) < 0):
        return f"sparse_crow_indices must rise from 0 to {values_count} (the number of values) without falling"
    if col.size and (int(col.min()) < 0 or int(col.max()) >= cols):
        return f"sparse_col_indices holds a column outside [0, {cols})"
    row_of = np.repeat(np.arange(rows, dtype=np.int64), np.diff(crow))
    flat = row_of * cols + col  # rises strictly exactly when each row's columns are sorted and distinct
    if flat.size > 1 and np.any(np.diff(flat) <= 0):
        return "sparse_col_indices must be sorted and distinct within each row"
    return None


def densify(values: npt.NDArray[Any], crow: npt.NDArray[Any], col: npt.NDArray[Any], shape: list[int],
            pad_value: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The dense ``shape`` array: ``pad_value`` everywhere, the listed ``values`` at their places (checked
    layout)."""
    rows = shape[0]
    dense = np.full(shape, pad_value, dtype=dtype)
    pointers = crow.astype(np.int64)
    counts = pointers[1:] - pointers[:-1]
    row_of = np.repeat(np.arange(rows, dtype=np.int64), counts)
    dense[row_of, col.astype(np.int64)] = values
    return dense


def compress(dense: npt.NDArray[Any], pad_value: int) -> CsrArrays:
    """The CSR arrays of a 2-D ``dense`` array: every entry that differs from ``pad_value``, row by row."""
    rows, cols = np.nonzero(dense != pad_value)
    crow = np.searchsorted(rows, np.arange(dense.shape[0] + 1)).astype(np.int64)
    return dense[rows, cols], crow, cols.astype(np.int64)
