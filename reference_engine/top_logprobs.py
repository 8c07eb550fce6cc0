"""Per-token top logprobs of one request, stored flat so that the cyclic GC never walks them.

A run with logprobs asked for emits one (id, logprob) list per token: a list of tuples per
token would be ~6 GC-tracked objects per token, and a full collection walking a few hundred
thousand of them stalls the host loop for tens of milliseconds, which the step gaps then
show. Here a request holds three `array.array`s of plain numbers whatever its length.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence


class TopLogprobs(Sequence[list[tuple[int, float]]]):
    """The `n` most likely (token id, logprob) pairs of each emitted token, most likely
    first; reads like a `list[list[tuple[int, float]]]`."""

    def __init__(self, tokens: Iterable[Iterable[tuple[int, float]]] = ()) -> None:
        self._ids, self._values = array("q"), array("d")
        self._ends = array("I")
        for pairs in map(list, tokens):
            self.append([token_id for token_id, _ in pairs], [value for _, value in pairs])

    def append(self, ids: Sequence[int], logprobs: Sequence[float]) -> None:
        """Add one token's top ids and their logprobs, most likely first."""
        if len(ids) != len(logprobs):
            raise ValueError(f"{len(ids)} ids but {len(logprobs)} logprobs")
        self._ids.extend(ids)
        self._values.extend(logprobs)
        self._ends.append(len(self._ids))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # negative indices; IndexError past the end
        start = self._ends[index - 1] if index else 0
        end = self._ends[index]
        return list(zip(self._ids[start:end], self._values[start:end], strict=True))

    def __iter__(self) -> Iterator[list[tuple[int, float]]]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TopLogprobs):
            return (self._ids, self._values, self._ends) == (other._ids, other._values, other._ends)
        if isinstance(other, Sequence):
            return list(self) == [list(map(tuple, top)) for top in other]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TopLogprobs({list(self)!r})"
