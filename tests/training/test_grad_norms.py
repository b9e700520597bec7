"""The GradNormTracker actor: bounded history, running statistics, spikes, telemetry, robustness."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from supervisors import ChildSpec, Restart
from tinker_actors.runtime import Runtime
from tinker_actors.training import grad_norms
from tinker_actors.training.grad_norms import GradNormReport, GradNormTracker, TermNorm, set_telemetry_hook


def report(total: float, model_id: str = "m", base: float = 1.0) -> GradNormReport:
    return GradNormReport(model_id=model_id, loss=total * 2, base=base,
                          terms=(TermNorm("l2", 0.5, 3.0, total, 0.5 * total),), total=total)


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    spec = ChildSpec("grad_norm_tracker",
                     lambda: GradNormTracker.start(history=4, spike_factor=3.0, spike_window=5, spike_min_history=3),
                     restart=Restart.PERMANENT, shutdown=2.0)
    with Runtime.scoped(slots={"grad_norm_tracker": lambda _: spec}) as rt:
        yield rt


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    set_telemetry_hook(lambda name, fields: seen.append((name, fields)))
    yield seen
    set_telemetry_hook(None)


def test_history_is_bounded_and_ordered(runtime: Runtime) -> None:
    for total in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]:
        grad_norms.report(runtime, report(total))
    records = grad_norms.history(runtime, "m")
    assert [(r.step, r.report.total) for r in records] == [(3, 3.0), (4, 4.0), (5, 5.0), (6, 6.0)]
    assert [r.report.total for r in grad_norms.history(runtime, "m", last=2)] == [5.0, 6.0]
    assert grad_norms.history(runtime, "other") == []


def test_summary_statistics_cover_every_step(runtime: Runtime) -> None:
    totals = [1.0, 1.5, 0.7, 2.2, 1.1, 0.9]
    for total in totals:
        grad_norms.report(runtime, report(total))
    summary = grad_norms.summary(runtime, "m")
    assert summary is not None and summary.steps == 6
    assert summary.total.count == 6
    assert summary.total.mean == pytest.approx(np.mean(totals))
    assert summary.total.std == pytest.approx(np.std(totals))
    assert (summary.total.min, summary.total.max, summary.total.last) == (0.7, 2.2, 0.9)
    assert summary.terms["l2"].mean == pytest.approx(0.5 * np.mean(totals))
    assert summary.base.mean == 1.0
    assert grad_norms.summary(runtime, "nobody") is None


def test_spikes_are_flagged_counted_and_emitted(runtime: Runtime, events: list[tuple[str, dict[str, Any]]]) -> None:
    for total in [1.0, 1.1, 0.9, 1.0, 5.0, 1.0]:
        grad_norms.report(runtime, report(total))
    records = grad_norms.history(runtime, "m")
    assert [r.spike for r in records] == [False, False, True, False]  # the 5.0 (median of before: 1.0)
    summary = grad_norms.summary(runtime, "m")
    assert summary is not None and summary.spikes == 1
    names = [name for name, _ in events]
    assert names.count("grad_norm.report") == 6 and names.count("grad_norm.spike") == 1
    spike = next(fields for name, fields in events if name == "grad_norm.spike")
    assert spike["total"] == 5.0 and spike["step"] == 5 and spike["median"] == pytest.approx(1.0)
    assert spike["terms"] == {"l2": {"raw": 5.0, "weighted": 2.5}}


def test_no_spike_before_enough_history(runtime: Runtime) -> None:
    for total in [1.0, 100.0]:
        grad_norms.report(runtime, report(total))
    assert [r.spike for r in grad_norms.history(runtime, "m")] == [False, False]


def test_a_malformed_report_or_broken_hook_does_not_cost_the_history(runtime: Runtime) -> None:
    grad_norms.report(runtime, report(1.0))
    grad_norms.report(runtime, GradNormReport("m", 1.0, 1.0, (object(),), 1.0))  # type: ignore[arg-type]

    def broken(name: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("hook down")

    set_telemetry_hook(broken)
    try:
        grad_norms.report(runtime, report(2.0))
    finally:
        set_telemetry_hook(None)
    assert [r.report.total for r in grad_norms.history(runtime, "m")] == [1.0, 2.0]


def test_models_are_kept_apart(runtime: Runtime) -> None:
    grad_norms.report(runtime, report(1.0, "a"))
    grad_norms.report(runtime, report(2.0, "b"))
    assert [r.report.total for r in grad_norms.history(runtime, "a")] == [1.0]
    assert [r.report.total for r in grad_norms.history(runtime, "b")] == [2.0]


def test_the_tracker_fills_the_runtime_slot_by_default() -> None:
    with Runtime.scoped() as rt:
        grad_norms.report(rt, report(3.0))
        assert [r.report.total for r in grad_norms.history(rt, "m")] == [3.0]
