"""The server's side of `Engine.run(feed=)`: requests and cancellations from the HTTP event
loop go into the engine's scheduler between steps, new tokens come out after each step.

Everything here runs on the engine thread. A run lasts while requests keep coming: it
closes after `idle_close_s` with nothing to do (the next request starts a new one), and
after `max_run_steps` it stops taking requests and drains, so that one run's records (the
engine keeps every step of a run) stay bounded on a server that is never idle.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from reference_engine.config import ConfigError
from reference_engine.request import FinishReason, Request
from reference_engine.scheduler import Scheduler
from stepgap.serve import logprobs as engine_logprobs
from stepgap.serve.errors import APIError, ErrorType, bad_request
from stepgap.serve.events import Cancel, Command, Event, Failed, Finished, Stop, Submit, TokenDelta
from stepgap.serve.stats import LiveStats
from stepgap.serve.streams import RequestStream


@dataclass
class LiveRequest:
    """A request in the engine, and how many of its tokens its stream has been sent."""

    request: Request
    stream: RequestStream
    sent: int = 0


class ServerFeed:
    """A `reference_engine.engine.RequestFeed` over the server's command queue."""

    def __init__(
        self,
        inbox: queue.SimpleQueue,
        send: Callable[[list[tuple[RequestStream, Event]]], None],
        stats: LiveStats,
        idle_close_s: float,
        logprobs: bool = True,
    ) -> None:
        # requests may ask for logprobs: the engine computes them every step
        self.logprobs = logprobs
        self.inbox = inbox
        self.send = send  # hands events to the HTTP event loop
        self.stats = stats
        self.idle_close_s = idle_close_s
        self.open = False
        self.stopping = False
        self.live: dict[int, LiveRequest] = {}
        self.deferred: deque[Submit] = deque()  # taken by the next run

    # -- RequestFeed -------------------------------------------------------------------
    def poll(self, scheduler: Scheduler, wait: bool) -> None:
        while self.open and self.deferred:
            self._admit(self.deferred.popleft(), scheduler)
        if wait and self.open:
            self._wait(scheduler)
        self._drain(scheduler)
        self.stats.occupancy(scheduler)

    def _wait(self, scheduler: Scheduler) -> None:
        self.stats.mark_idle()
        try:
            command = self.inbox.get(timeout=self.idle_close_s)
        except queue.Empty:
            self.open = False  # idle: end this run
            return
        self.handle(command, scheduler)

    def _drain(self, scheduler: Scheduler) -> None:
        while True:
            try:
                command = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.handle(command, scheduler)

    # -- commands ----------------------------------------------------------------------
    def handle(self, command: Command, scheduler: Scheduler | None) -> None:
        """Apply one command; with no `scheduler` (between runs) submissions wait."""
        if isinstance(command, Submit):
            if self.open and scheduler is not None:
                self._admit(command, scheduler)
            else:
                self.deferred.append(command)
        elif isinstance(command, Cancel):
            self._cancel(command.request_id, scheduler)
        elif isinstance(command, Stop):
            self.open, self.stopping = False, True

    def _admit(self, command: Submit, scheduler: Scheduler) -> None:
        job = command.job
        request = Request(command.request_id, list(job.prompt), job.params)
        try:
            scheduler.add(request)
        except ConfigError as error:
            self.send([(command.stream, Failed(bad_request(str(error))))])
            return
        self.live[command.request_id] = LiveRequest(request, command.stream)

    def _cancel(self, request_id: int, scheduler: Scheduler | None) -> None:
        live = self.live.pop(request_id, None)
        if live is not None and scheduler is not None:
            scheduler.abort(live.request)  # a request that already stopped keeps its reason
            self.stats.count_request(live.request.finish_reason)
        for waiting in [s for s in self.deferred if s.request_id == request_id]:
            self.deferred.remove(waiting)
            self.stats.count_request(FinishReason.ABORT)

    # -- after each step ---------------------------------------------------------------
    def collect(self) -> list[tuple[RequestStream, Event]]:
        """Each live request's new tokens, and the end of those that finished."""
        events: list[tuple[RequestStream, Event]] = []
        for request_id, live in list(self.live.items()):
            request, count = live.request, len(live.request.output)
            if count > live.sent:
                events.append((live.stream, _delta(request, live.sent, count)))
                live.sent = count
            if request.finished:
                events.append((live.stream, _finished(request)))
                del self.live[request_id]
                self.stats.count_request(request.finish_reason)
        return events

    def fail_all(self, message: str) -> list[tuple[RequestStream, Event]]:
        """The engine broke: every request it holds or will hold fails."""
        error = APIError(message, ErrorType.INTERNAL)
        streams = [live.stream for live in self.live.values()]
        streams += [submit.stream for submit in self.deferred]
        self.live.clear()
        self.deferred.clear()
        return [(stream, Failed(error)) for stream in streams]


def _delta(request: Request, start: int, end: int) -> TokenDelta:
    entries = tuple(engine_logprobs.read(request, i) for i in range(start, end))
    return TokenDelta(tuple(request.output[start:end]), entries)


def _finished(request: Request) -> Finished:
    reason = request.finish_reason
    stop_token = request.output[-1] if reason is FinishReason.STOP_TOKEN else None
    return Finished(reason, stop_token, len(request.output))  # type: ignore[arg-type]
