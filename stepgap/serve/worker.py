"""The engine thread: it owns the engine and runs it apart from the HTTP event loop.

The event loop talks to it only through a queue of commands (submit, cancel, stop); it
answers through one `call_soon_threadsafe` per engine step carrying every request's new
tokens. Between requests the engine sits in `Engine.run(feed=)`, blocked on the queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from reference_engine.engine import Engine, StepRecord
from stepgap.serve.config import Schedule
from stepgap.serve.errors import APIError, ErrorType
from stepgap.serve.events import Cancel, Command, Event, Failed, Stop, Submit, TokenDelta
from stepgap.serve.feed import ServerFeed
from stepgap.serve.protocol import CompletionJob
from stepgap.serve.stats import LiveStats
from stepgap.serve.streams import RequestStream, deliver


class EngineWorker:
    """Runs `engine` under schedule `mode` on its own thread, fed from a command queue."""

    def __init__(
        self,
        engine: Engine,
        mode: Schedule,
        stats: LiveStats,
        idle_close_s: float = 0.5,
        max_run_steps: int = 50_000,
        logprobs: bool = True,
    ) -> None:
        self.engine, self.mode, self.stats = engine, mode, stats
        self.max_run_steps = max_run_steps
        self.inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.feed = ServerFeed(self.inbox, self._send, stats, idle_close_s, logprobs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="stepgap-engine", daemon=True)
        self._run_steps = 0

    # -- the event loop's side ---------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def submit(self, request_id: int, job: CompletionJob, stream: RequestStream) -> None:
        self.inbox.put(Submit(request_id, job, stream))

    def cancel(self, request_id: int) -> None:
        self.inbox.put(Cancel(request_id))

    def stop(self, timeout_s: float) -> bool:
        """Finish the current run, end the thread; True if it ended within `timeout_s`."""
        self.inbox.put(Stop())
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # -- the engine thread -------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while self._wait_for_work():
                self._run()
            self._send(self.feed.fail_all("the server is shutting down"))
        except Exception as error:  # the engine broke: fail everything, serve no more
            self.stats.set_healthy(False)
            self._send(self.feed.fail_all(f"engine failed: {type(error).__name__}: {error}"))
            self._refuse_forever()

    def _wait_for_work(self) -> bool:
        """Block until a request waits (True) or the server stops (False)."""
        while not self.feed.deferred and not self.feed.stopping:
            self.feed.handle(self.inbox.get(), scheduler=None)
        return not self.feed.stopping

    def _run(self) -> None:
        self.feed.open, self._run_steps = True, 0
        self.stats.begin_run()
        try:
            self.engine.run([], self.mode.value, self._on_step, feed=self.feed)
        finally:
            self.stats.occupancy(None)

    def _on_step(self, record: StepRecord) -> None:
        events = self.feed.collect()
        tokens = sum(len(e.token_ids) for _, e in events if isinstance(e, TokenDelta))
        self.stats.observe(record, tokens)
        if events:
            self._send(events)
        self._run_steps += 1
        if self._run_steps >= self.max_run_steps:
            self.feed.open = False  # drain this run; the next one takes new requests

    def _refuse_forever(self) -> None:
        """Answer every later request with a 503, until the server stops."""
        error = APIError("the engine failed; this server no longer serves", ErrorType.UNAVAILABLE)
        while not self.feed.stopping and not isinstance(command := self.inbox.get(), Stop):
            if isinstance(command, Submit):
                self._send([(command.stream, Failed(error))])

    def _send(self, events: list[tuple[RequestStream, Event]]) -> None:
        if events and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(deliver, events)
