"""The host heap during a run: what existed before it is out of the cyclic GC's reach.

A process holding torch, Triton and a model has a few hundred thousand GC-tracked objects;
a full collection walks them all and stalls the host loop for 100-300 ms, which shows as
one huge step gap in whichever run it lands in (seen on an H200: 166 ms and 248 ms).
Freezing the heap at the start of a run (as vLLM and SGLang do after start-up) leaves the
collector only the objects the run itself creates; thawing at the end puts the rest back.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the objects alive now for the duration of the block."""
    freeze()
    try:
        yield
    finally:
        thaw()


def freeze() -> None:
    """`frozen_heap` for a loop that starts and ends a run in separate calls (TP ranks)."""
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()
