"""Intervals on one time axis: their union, how much of a window it covers, and who owns
each instant when intervals nest.

Used for every idle figure (span minus the union of device intervals) and for placing a
host instant in the innermost host range or step range around it. All functions take and
return numpy arrays and are exact for the float µs the readers produce (sums and
differences of ns-exact values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1  # no owner


@dataclass(frozen=True)
class Union:
    """Disjoint, sorted intervals [starts[i], ends[i]) and the covered length before each."""

    starts: np.ndarray
    ends: np.ndarray
    before: np.ndarray  # covered length up to starts[i]

    @classmethod
    def of(cls, starts, ends) -> Union:
        starts, ends = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
        keep = ends > starts
        order = np.argsort(starts[keep], kind="stable")
        starts, ends = starts[keep][order], ends[keep][order]
        if not len(starts):
            return cls(starts, ends, starts)
        reach = np.maximum.accumulate(ends)
        new = np.concatenate([[True], starts[1:] > reach[:-1]])
        merged_starts = starts[new]
        merged_ends = np.maximum.reduceat(ends, np.flatnonzero(new))
        before = np.concatenate([[0.0], np.cumsum(merged_ends - merged_starts)[:-1]])
        return cls(merged_starts, merged_ends, before)

    def covered_until(self, t) -> np.ndarray:
        """Covered length in (-inf, t)."""
        t = np.asarray(t, dtype=float)
        if not len(self.starts):
            return np.zeros_like(t)
        i = np.maximum(np.searchsorted(self.starts, t, side="right") - 1, 0)
        inside = np.clip(t - self.starts[i], 0, self.ends[i] - self.starts[i])
        return np.where(t > self.starts[0], self.before[i] + inside, 0.0)

    def covered(self, a, b) -> np.ndarray:
        """Covered length of each window [a, b) (0 where b <= a)."""
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return np.where(b > a, self.covered_until(b) - self.covered_until(a), 0.0)

    @property
    def length(self) -> float:
        return float((self.ends - self.starts).sum())


def owner_timeline(starts, ends, ids) -> tuple[np.ndarray, np.ndarray]:
    """Who owns each instant: `(bounds, owner)`, owner[i] holding from bounds[i] to
    bounds[i + 1] (and after the last bound), NONE where no interval is open.

    The owner is the interval opened last among those still open: the innermost one when
    intervals nest (host ranges on a thread), a sensible one when they do not. Empty
    intervals own nothing."""
    starts, ends, ids = (np.asarray(x) for x in (starts, ends, ids))
    keep = ends > starts
    starts, ends, ids = starts[keep], ends[keep], ids[keep]
    times = np.concatenate([ends, starts])
    opening = np.concatenate([np.zeros(len(ends), bool), np.ones(len(starts), bool)])
    which = np.concatenate([np.arange(len(ends)), np.arange(len(starts))])
    order = np.lexsort((which, opening, times))  # at one instant: closings, then openings
    return _sweep(times[order], opening[order], which[order], ids, starts)


def _sweep(times, opening, which, ids, starts) -> tuple[np.ndarray, np.ndarray]:
    stack: list[int] = []
    is_open = np.zeros(len(ids), dtype=bool)
    bounds: list[float] = []
    owners: list[int] = []
    events = zip(times.tolist(), opening.tolist(), which.tolist(), strict=True)
    for position, (t, opens, k) in enumerate(events):
        if opens:
            stack.append(k)
            is_open[k] = True
        else:
            is_open[k] = False
        while stack and not is_open[stack[-1]]:
            stack.pop()
        if position + 1 < len(times) and times[position + 1] == t:
            continue  # only the state after every change at this instant counts
        owner = int(ids[stack[-1]]) if stack else NONE
        if owners and owners[-1] == owner:
            continue
        bounds.append(t)
        owners.append(owner)
    return np.asarray(bounds, dtype=float), np.asarray(owners, dtype=np.int64)


def owner_at(timeline: tuple[np.ndarray, np.ndarray], t) -> np.ndarray:
    """The owner at each instant `t` (NONE before the first bound)."""
    bounds, owners = timeline
    i = np.searchsorted(bounds, np.asarray(t, dtype=float), side="right") - 1
    return np.where(i >= 0, owners[np.maximum(i, 0)] if len(owners) else NONE, NONE)
