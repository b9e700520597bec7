"""Combining chunk outputs gives the official SDK's numbers, reduction by reduction (issue 9).

The official reductions (tinker 0.6.3, ``tinker.lib.chunked_fwdbwd_helpers``) are imported and run on the
same chunk outputs as ours; every reduction must give the identical float, also for a single chunk (the
official SDK reduces that one too) and for no chunk at all (an empty batch).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinker_actors.types as ours
from tinker_actors.training.chunking import combine_outputs, empty_output, reduce_metrics

tinker = pytest.importorskip("tinker", reason="the compat extra (tinker==0.6.3) is not installed")
official = pytest.importorskip("tinker.lib.chunked_fwdbwd_helpers")

pytestmark = pytest.mark.compat

REDUCTIONS = ["sum", "mean", "min", "max", "slack", "hash_unordered", "unique"]

# Metric values as servers send them: ordinary floats, and integral ones (hash_unordered values are hashes).
values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                   st.integers(-(2**62), 2**62).map(float))


def chunk(types: Any, metrics: dict[str, float], outputs: int) -> Any:
    entry = {"logprobs": types.TensorData(data=[0.0], dtype="float32", shape=[1])}
    return types.ForwardBackwardOutput(loss_fn_output_type="cross_entropy", loss_fn_outputs=[entry] * outputs,
                                       metrics=metrics)


def both(chunks: list[tuple[dict[str, float], int]]) -> tuple[dict[str, float], dict[str, float]]:
    mine = combine_outputs([chunk(ours, metrics, n) for metrics, n in chunks])
    theirs = official.combine_fwd_bwd_output_results([chunk(tinker.types, metrics, n) for metrics, n in chunks])
    assert len(mine.loss_fn_outputs) == len(theirs.loss_fn_outputs)
    return mine.metrics, theirs.metrics


@pytest.mark.parametrize("reduction", REDUCTIONS)
@settings(max_examples=40, deadline=None)
@given(per_chunk=st.lists(st.tuples(values, st.integers(1, 128)), min_size=1, max_size=6))
def test_every_reduction_equals_the_official_one(reduction: str, per_chunk: list[tuple[float, int]]) -> None:
    key = f"metric:{reduction}"
    mine, theirs = both([({key: value}, n) for value, n in per_chunk])
    assert list(mine) == list(theirs)
    for name in theirs:
        assert mine[name] == theirs[name], (name, mine[name], theirs[name])  # bit-identical, not approx


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_chunk_is_reduced_too(reduction: str) -> None:
    # 0.1 weighted by 3 and divided by 3 is 0.10000000000000002: the official SDK reports that, so do we.
    mine, theirs = both([({f"m:{reduction}": 0.1, "h:hash_unordered": 12345.0}, 3)])
    assert mine == theirs
    assert theirs["h:hash_unordered"] == float(hash((12345,)))


def test_several_metrics_keep_the_official_order() -> None:
    metrics = [({"loss:sum": 1.5, "u:unique": 1.0, "m:mean": 0.2, "h:hash_unordered": 7.0, "s:slack": 0.3}, 2),
               ({"loss:sum": 2.25, "u:unique": 2.0, "m:mean": 0.4, "h:hash_unordered": 9.0, "s:slack": 0.9}, 5),
               ({"loss:sum": 0.125, "u:unique": 3.0, "m:mean": 0.1, "h:hash_unordered": 8.0, "s:slack": 0.5}, 1)]
    mine, theirs = both(metrics)
    assert list(mine.items()) == list(theirs.items())
    assert mine["u:unique_1"] == 2.0 and mine["u:unique_2"] == 3.0


def test_hash_unordered_ignores_chunk_order() -> None:
    forward = reduce_metrics([{"h:hash_unordered": 3.0}, {"h:hash_unordered": 11.0}], [1, 1])
    backward = reduce_metrics([{"h:hash_unordered": 11.0}, {"h:hash_unordered": 3.0}], [1, 1])
    assert forward == backward == {"h:hash_unordered": float(hash((3, 11)))}


def test_no_chunks_is_the_official_empty_output() -> None:
    mine = combine_outputs([])
    theirs = official.combine_fwd_bwd_output_results([])
    assert mine == empty_output()
    assert (mine.loss_fn_output_type, mine.loss_fn_outputs, mine.metrics) == \
        (theirs.loss_fn_output_type, theirs.loss_fn_outputs, theirs.metrics)


def test_what_the_official_sdk_drops_is_kept() -> None:
    # Documented difference: an unknown reduction, or a key some chunks lack, is kept (as a weighted mean)
    # rather than dropped; a key only one chunk has keeps its value.
    reduced = reduce_metrics([{"a:newkind": 1.0, "b:sum": 2.0}, {"a:newkind": 4.0}], [1, 3])
    assert reduced == {"a:newkind": 3.25, "b:sum": 2.0}


def test_a_non_finite_hash_input_does_not_fail_the_batch() -> None:
    assert math.isnan(reduce_metrics([{"h:hash_unordered": math.nan}, {"h:hash_unordered": 1.0}],
                                     [1, 1])["h:hash_unordered"])
