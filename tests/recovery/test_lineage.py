"""The bookkeeping behind exact rollback reports: StepSet and Lineage (pure logic, no service)."""

from __future__ import annotations

from tinker_actors.recovery.lineage import Lineage
from tinker_actors.recovery.steps import StepSet


def test_stepset_keeps_ranges_and_subtracts_exactly() -> None:
    held = StepSet()
    for step in (1, 2, 3, 4, 6, 7):
        held = held.with_step(step)
    assert held.ranges == ((1, 4), (6, 7))
    assert list(held) == [1, 2, 3, 4, 6, 7] and len(held) == 6 and 6 in held and 5 not in held
    assert list(held.minus(StepSet.of([2, 3, 7]))) == [1, 4, 6]
    assert list(StepSet([(1, 100_000)]).minus(StepSet([(1, 99_998)]))) == [99_999, 100_000]
    assert StepSet.of([3, 1, 2]) == StepSet([(1, 3)])


def _run(lineage: Lineage, op_id: int, kind: str, *, ok: bool = True, path: str | None = None) -> int | None:
    step = lineage.submitted(op_id, kind)
    lineage.sent(op_id)
    if ok:
        lineage.succeeded(op_id, path)
    else:
        lineage.ended(op_id)
    lineage.finished(op_id)
    return step


def test_a_checkpoint_holds_the_steps_before_it_and_a_recovery_reports_the_rest() -> None:
    lineage = Lineage()
    op = iter(range(1, 1000))
    for _ in range(3):
        _run(lineage, next(op), "forward_backward")
        _run(lineage, next(op), "optim_step")
    _run(lineage, next(op), "save_weights", path="tinker://m/weights/a")
    for _ in range(2):
        _run(lineage, next(op), "forward_backward")
        _run(lineage, next(op), "optim_step")
    _run(lineage, next(op), "forward_backward")  # step 6's gradient, on the model about to be lost
    (checkpoint,) = lineage.checkpoints()
    assert checkpoint.step == 3 and checkpoint.steps == StepSet([(1, 3)])
    assert lineage.settled(0) and lineage.content(0) == StepSet([(1, 5)])
    generation, lost_gradient = lineage.new_generation(0, checkpoint.steps)
    assert generation == 1 and list(lost_gradient) == [6]
    assert list(lineage.content(0).minus(checkpoint.steps)) == [4, 5]
    # Step 6 can no longer complete: its optim_step (and any forward_backward of it) is rolled back.
    optim_6 = next(op)
    assert lineage.submitted(optim_6, "optim_step") == 6
    assert lineage.rolled_back(optim_6) == 6
    forward_7 = next(op)
    lineage.submitted(forward_7, "forward_backward")
    assert lineage.rolled_back(forward_7) is None
    assert lineage.content(1) == StepSet([(1, 3)])


def test_results_arriving_out_of_order_are_folded_in_send_order() -> None:
    lineage = Lineage()
    for op_id, kind in ((1, "optim_step"), (2, "save_weights"), (3, "optim_step")):
        lineage.submitted(op_id, kind)
        lineage.sent(op_id)
    lineage.succeeded(3)                      # the later step's result first
    lineage.succeeded(2, "tinker://m/weights/x")
    assert lineage.checkpoints() == []        # op 1 still out: what the checkpoint holds is unknown
    assert not lineage.settled(0)
    lineage.succeeded(1)
    (checkpoint,) = lineage.checkpoints()
    assert checkpoint.steps == StepSet.of([1]) and lineage.content(0) == StepSet.of([1, 2])


def test_a_held_call_sent_again_counts_on_the_new_model_only() -> None:
    lineage = Lineage()
    lineage.submitted(1, "optim_step")
    lineage.sent(1)
    lineage.ended(1)                          # held: lost with the model, will be sent again
    assert lineage.settled(0)
    lineage.new_generation(0, StepSet())
    assert lineage.sent(1) == 1
    lineage.succeeded(1)
    lineage.finished(1)
    assert lineage.content(1) == StepSet.of([1]) and lineage.content(0) == StepSet()


def test_operations_submitted_before_the_bookkeeping_are_not_followed() -> None:
    lineage = Lineage()
    lineage.sent(99)                          # never numbered
    assert lineage.settled(0) and lineage.generation_of(99) is None
