"""What a replayed step costs: the measured cost of a sync step of the same shape.

The overlap schedule runs other steps than the sync run did (a slot freed one step later,
a stop seen one step late, arrivals seen at other times), so a replayed step is matched to
the sync run's steps by shape: first those of the same kind, decode rows, prompt tokens
and chunks; else the same kind with the nearest token count (then chunk count); else any
kind with the nearest token count. Steps of one shape are handed out in the order the sync
run ran them, round and round, so a step late in the replay costs what steps late in the
sync run cost (longer contexts). No cost is fitted or averaged: every replayed step costs
exactly what one measured sync step cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from stepgap.predict.inputs import StepShape, SyncStep
from stepgap.predict.model import StepCost


class CostTable:
    """Hands out measured step costs by shape (stateful: it remembers what it gave)."""

    def __init__(self, steps: Sequence[SyncStep]) -> None:
        if not steps:
            raise ValueError("a cost table needs at least one measured step")
        self._by_shape: dict[StepShape, list[StepCost]] = defaultdict(list)
        for step in steps:
            self._by_shape[step.shape].append(step.cost)
        self._used: dict[StepShape, int] = defaultdict(int)
        self.exact = self.nearest = 0  # matches of each sort, for the output's notes

    def cost(self, shape: StepShape) -> StepCost:
        """The cost of the next measured step matching `shape`."""
        match = shape if shape in self._by_shape else self._nearest(shape)
        if match == shape:
            self.exact += 1
        else:
            self.nearest += 1
        costs = self._by_shape[match]
        index = self._used[match] % len(costs)
        self._used[match] += 1
        return costs[index]

    def _nearest(self, shape: StepShape) -> StepShape:
        same_kind = [s for s in self._by_shape if s.kind is shape.kind]
        candidates = same_kind or list(self._by_shape)
        return min(candidates, key=lambda s: _distance(s, shape))


def _distance(measured: StepShape, wanted: StepShape) -> tuple[int, int, int]:
    return (
        abs(measured.num_tokens - wanted.num_tokens),
        abs(measured.chunks - wanted.chunks),
        abs(measured.decode_rows - wanted.decode_rows),
    )
