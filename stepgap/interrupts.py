"""Ctrl-C held back while a finished result is being saved, so it is never half-written or
thrown away: the interrupt takes effect once the block is done."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

INTERRUPTED_EXIT = 130
INTERRUPTED_MESSAGE = "interrupted"


class Deferred:
    """What a `deferred_interrupts` block saw: `received` once Ctrl-C was pressed in it."""

    def __init__(self) -> None:
        self.received = False

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.received = True


@contextmanager
def deferred_interrupts(raise_on_exit: bool = True) -> Iterator[Deferred]:
    """Inside the block, SIGINT is recorded instead of raised; on leaving it, a recorded one
    is raised as KeyboardInterrupt (or, with `raise_on_exit` off, left for the caller to
    read from the yielded Deferred). Outside the main thread it changes nothing."""
    deferred = Deferred()
    if threading.current_thread() is not threading.main_thread():
        yield deferred
        return
    previous: Any = signal.signal(signal.SIGINT, deferred.record)
    try:
        yield deferred
    finally:
        signal.signal(signal.SIGINT, previous)
    if deferred.received and raise_on_exit:
        raise KeyboardInterrupt
