"""One request's events on the HTTP event loop: the engine thread hands them over in one
`call_soon_threadsafe` per engine step (`deliver`), the handler awaits them in batches."""

from __future__ import annotations

import asyncio

from stepgap.serve.events import Event, Failed, Finished


class RequestStream:
    """The events of one request, in order; `done` once it finished or failed."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.done = False
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def put(self, event: Event) -> None:
        """On the event loop only (see `deliver`)."""
        self._queue.put_nowait(event)

    async def next_batch(self) -> list[Event]:
        """The events that arrived since the last batch (at least one; waits for it)."""
        batch = [await self._queue.get()]
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        self.done = self.done or isinstance(batch[-1], Finished | Failed)
        return batch


def deliver(events: list[tuple[RequestStream, Event]]) -> None:
    """Hand one engine step's events to their streams (runs on the event loop)."""
    for stream, event in events:
        stream.put(event)
