"""A rank that died or hung: the one-line error a tensor-parallel run ends with (torch-free)."""

from __future__ import annotations

from typing import Any


class RankFailed(RuntimeError):
    """A tensor-parallel rank died or stopped making progress. `str()` is one line for
    users; `.output` holds rank 0's measurements so far (None: before any run started)."""

    def __init__(self, message: str, output: Any = None) -> None:
        super().__init__(message)
        self.output = output
