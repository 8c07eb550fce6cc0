"""A request's engine events as a `/v1/completions` answer: SSE chunks, or one JSON body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from stepgap.serve.events import Event, Failed, Finished, TokenDelta
from stepgap.serve.logprobs import TokenLogprobs
from stepgap.serve.responses import DONE, ResponseContext, choice, chunk, sse, usage
from stepgap.serve.streams import RequestStream


@dataclass
class Batch:
    """The events of one `next_batch`, folded: their tokens, and how the request ended."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs | None] = field(default_factory=list)
    finished: Finished | None = None
    failed: Failed | None = None

    @classmethod
    def fold(cls, events: list[Event]) -> Batch:
        batch = cls()
        for event in events:
            if isinstance(event, TokenDelta):
                batch.token_ids.extend(event.token_ids)
                batch.logprobs.extend(event.logprobs)
            elif isinstance(event, Finished):
                batch.finished = event
            else:
                batch.failed = event
        return batch


async def sse_stream(stream: RequestStream, ctx: ResponseContext) -> AsyncIterator[str]:
    """The streamed answer: one chunk per batch of tokens, usage, `[DONE]`."""
    sent, offset = 0, 0
    while True:
        batch = Batch.fold(await stream.next_batch())
        if batch.failed is not None:
            yield sse(batch.failed.error.body())
            yield DONE
            return
        if batch.token_ids or batch.finished:
            piece = choice(ctx, batch.token_ids, batch.logprobs, batch.finished, sent == 0, offset)
            sent += len(batch.token_ids)
            offset += len(piece["text"])
            running = usage(len(ctx.job.prompt), sent) if ctx.job.continuous_usage else None
            yield sse(chunk(ctx, [piece], running))
        if batch.finished is not None:
            if ctx.job.include_usage:
                yield sse(chunk(ctx, [], usage(len(ctx.job.prompt), sent)))
            yield DONE
            return


async def full_response(stream: RequestStream, ctx: ResponseContext) -> dict:
    """The non-streamed answer, once the request finished (APIError if it failed)."""
    total = Batch()
    while total.finished is None:
        batch = Batch.fold(await stream.next_batch())
        if batch.failed is not None:
            raise batch.failed.error
        total.token_ids += batch.token_ids
        total.logprobs += batch.logprobs
        total.finished = batch.finished
    piece = choice(ctx, total.token_ids, total.logprobs, total.finished, first=True)
    return chunk(ctx, [piece], usage(len(ctx.job.prompt), len(total.token_ids)))
