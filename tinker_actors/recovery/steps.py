"""StepSet: which optim_steps (numbered in call order, from 1) a model holds, in a few ranges.

A model trained for days holds hundreds of thousands of steps, nearly all contiguous; a recovery leaves a
hole where the rolled-back steps were. Ranges keep that small and make the differences a report needs cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["StepSet"]


class StepSet:
    """An immutable set of positive step numbers stored as sorted, disjoint, non-adjacent ``(first, last)`` ranges."""

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._ranges: tuple[tuple[int, int], ...] = _normalised(ranges)

    @classmethod
    def of(cls, steps: Iterable[int]) -> StepSet:
        return cls((step, step) for step in steps)

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._ranges

    def with_step(self, step: int) -> StepSet:
        """This set plus ``step`` (the common case, one past the last, costs O(1) ranges copied)."""
        if self._ranges and self._ranges[-1][0] <= step <= self._ranges[-1][1] + 1:
            first, last = self._ranges[-1]
            return StepSet._raw((*self._ranges[:-1], (first, max(last, step))))
        return StepSet((*self._ranges, (step, step)))

    def minus(self, other: StepSet) -> StepSet:
        """The steps of this set that ``other`` does not hold."""
        result: list[tuple[int, int]] = []
        holes = list(other._ranges)
        for first, last in self._ranges:
            start = first
            for hole_first, hole_last in holes:
                if hole_last < start or hole_first > last:
                    continue
                if hole_first > start:
                    result.append((start, hole_first - 1))
                start = max(start, hole_last + 1)
                if start > last:
                    break
            if start <= last:
                result.append((start, last))
        return StepSet._raw(tuple(result))

    def __iter__(self) -> Iterator[int]:
        for first, last in self._ranges:
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self._ranges)

    def __contains__(self, step: object) -> bool:
        return isinstance(step, int) and any(first <= step <= last for first, last in self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepSet) and other._ranges == self._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def __repr__(self) -> str:
        return "StepSet(" + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self._ranges) + ")"

    @classmethod
    def _raw(cls, ranges: tuple[tuple[int, int], ...]) -> StepSet:
        made = cls.__new__(cls)
        made._ranges = ranges
        return made


def _normalised(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted((a, b) for a, b in ranges if a <= b):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)
