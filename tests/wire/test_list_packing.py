"""Lists a user passes are packed by ``struct`` (the fast path): the same bytes and the same errors as numpy."""

from __future__ import annotations

import numpy as np
import pytest

from tinker_actors.errors import InvalidInputError
from tinker_actors.wire.v0_38.arrays import INT32_MAX, INT32_MIN, pack, pack_int32

LISTS: dict[str, tuple[list[int] | list[float], str]] = {
    "floats": ([0.1, -2.5, 1e-30, 3.4e38, float("nan"), float("inf")], "float32"),
    "ints as floats": ([1, 2, -3], "float32"),
    "int64 edges": ([-(2**63), 2**63 - 1, 0], "int64"),
    "floats as int64 are truncated, as numpy does": ([1.9, -2.9], "int64"),
    "empty": ([], "float32"),
}


@pytest.mark.parametrize("name", list(LISTS))
def test_lists_pack_as_numpy_would(name: str) -> None:
    values, dtype = LISTS[name]
    expected = np.asarray(values, dtype="<f4" if dtype == "float32" else "<i8").tobytes()
    assert pack(values, dtype, "x") == expected  # type: ignore[arg-type]
    assert pack(np.asarray(values), dtype, "x") == expected  # type: ignore[arg-type]


def test_a_float_beyond_float32_becomes_infinity_as_with_numpy() -> None:
    with np.errstate(over="ignore"):
        assert pack([1e39], "float32", "x") == np.array([np.inf], dtype="<f4").tobytes()


def test_values_outside_int64_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="outside the int64 range"):
        pack([2**63], "int64", "x")


@pytest.mark.parametrize("tokens", [[INT32_MAX + 1], [1, INT32_MIN - 1], [2**70]])
def test_token_ids_outside_int32_are_refused(tokens: list[int]) -> None:
    with pytest.raises(InvalidInputError, match="outside the int32 range"):
        pack_int32(tokens, "tokens")


def test_token_ids_pack_as_little_endian_int32() -> None:
    tokens = [0, 1, INT32_MAX, INT32_MIN, True]
    expected = np.asarray(tokens, dtype="<i4").tobytes()
    assert pack_int32(tokens, "tokens") == expected
    assert pack_int32(np.asarray(tokens, dtype=np.int32), "tokens") == expected
    numpy_ints: list[int] = [np.int64(5)]  # type: ignore[list-item]
    assert pack_int32(numpy_ints, "tokens") == np.array([5], dtype="<i4").tobytes()
