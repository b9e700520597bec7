"""ModelSequencer on its own: any arrival order and any repeats run each seq_id once, in order."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.local.engine.sequencer import ModelSequencer, Operation


async def _run(arrivals: list[int]) -> list[int]:
    sequencer = ModelSequencer(gap_timeout_s=5.0)
    ran: list[int] = []
    finished = asyncio.Event()
    expected = len(set(arrivals))

    def operation(seq_id: int) -> Operation:
        async def run() -> None:
            await asyncio.sleep(0)  # let more arrivals interleave with execution
            ran.append(seq_id)
            if len(ran) == expected:
                finished.set()
        return run

    for seq_id in arrivals:
        if sequencer.seen(seq_id) is None:  # what the service does with a repeat
            sequencer.submit(seq_id, "op", f"req-{seq_id}", operation(seq_id))
        await asyncio.sleep(0)
    await asyncio.wait_for(finished.wait(), timeout=5)
    await sequencer.close()
    return ran


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(1, 9))), st.lists(st.integers(1, 8), max_size=6))
def test_any_arrival_order_runs_in_seq_order_once(order: list[int], repeats: list[int]) -> None:
    arrivals = list(order)
    for position, seq_id in enumerate(repeats):
        arrivals.insert(min(position * 2, len(arrivals)), seq_id)
    assert asyncio.run(_run(arrivals)) == list(range(1, 9))


def test_consumed_seq_ids_are_not_waited_for() -> None:
    async def scenario() -> list[int]:
        sequencer = ModelSequencer(gap_timeout_s=10.0)
        ran: list[int] = []
        done = asyncio.Event()

        async def op() -> None:
            ran.append(2)
            done.set()

        sequencer.submit(2, "op", "r2", op)
        sequencer.consume(1, "op", "r1")  # e.g. a future that never completes
        await asyncio.wait_for(done.wait(), timeout=2)  # far below the 10 s gap timeout
        assert sequencer.seen(1) is not None
        await sequencer.close()
        return ran

    assert asyncio.run(scenario()) == [2]
