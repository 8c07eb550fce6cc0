"""The JSON of `/v1/completions` answers, in vLLM's shape.

Streams are Server-Sent Events: `data: <chunk>` per engine step that brought the request
tokens, the last token chunk carrying `finish_reason`, then (with `include_usage`) a chunk
with no choices and the `usage`, then `data: [DONE]`, as vLLM streams completions
(vllm/entrypoints/openai/completion/protocol.py, CompletionStreamResponse). Token ids:
`token_ids` per choice, the chunk's new ids; `prompt_token_ids` in the first chunk.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from reference_engine.request import FinishReason
from stepgap.serve.events import Finished
from stepgap.serve.logprobs import TokenLogprobs
from stepgap.serve.protocol import CompletionJob
from stepgap.serve.tokenizer import ByteTokenizer

DONE = "data: [DONE]\n\n"
FINISH_REASONS = {
    FinishReason.LENGTH: "length",
    FinishReason.EOS: "stop",
    FinishReason.STOP_TOKEN: "stop",
    FinishReason.ABORT: "abort",
}


@dataclass(frozen=True)
class ResponseContext:
    """What every chunk of one response repeats, and how it renders tokens."""

    id: str
    created: int
    model: str
    job: CompletionJob
    tokenizer: ByteTokenizer

    @classmethod
    def new(cls, job: CompletionJob, model: str, tokenizer: ByteTokenizer) -> ResponseContext:
        return cls(f"cmpl-{uuid.uuid4().hex}", int(time.time()), model, job, tokenizer)

    def token_name(self, token_id: int) -> str:
        return f"token_id:{token_id}" if self.job.ids_as_strings else self.tokenizer.piece(token_id)


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    total = prompt_tokens + completion_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def choice(
    ctx: ResponseContext,
    token_ids: list[int],
    logprobs: list[TokenLogprobs | None],
    finish: Finished | None,
    first: bool,
    text_offset: int = 0,
) -> dict[str, Any]:
    """One choice: the tokens of a chunk (or of the whole completion)."""
    job = ctx.job
    text = ctx.tokenizer.decode(token_ids) if job.text else ""
    out: dict[str, Any] = {
        "index": 0,
        "text": text,
        "logprobs": logprobs_block(ctx, token_ids, logprobs, text_offset)
        if job.logprobs is not None
        else None,
        "finish_reason": FINISH_REASONS[finish.reason] if finish else None,
        "stop_reason": finish.stop_token if finish else None,
    }
    if job.token_ids:
        out["token_ids"] = list(token_ids)
    if job.prompt_token_ids and first:
        out["prompt_token_ids"] = list(job.prompt)
    return out


def logprobs_block(
    ctx: ResponseContext,
    token_ids: list[int],
    logprobs: list[TokenLogprobs | None],
    text_offset: int,
) -> dict[str, Any]:
    """The completions API's logprobs: tokens, their logprobs, the top alternatives (the
    sampled token included, as vLLM does) and text offsets; nulls where the engine gave none."""
    names = [ctx.token_name(t) for t in token_ids]
    offsets, position = [], text_offset
    for name in names:
        offsets.append(position)
        position += len(name)
    return {
        "tokens": names,
        "token_logprobs": [entry.logprob if entry else None for entry in logprobs],
        "top_logprobs": [_top(ctx, t, entry) for t, entry in zip(token_ids, logprobs, strict=True)],
        "text_offset": offsets,
    }


def _top(ctx: ResponseContext, token_id: int, entry: TokenLogprobs | None) -> dict | None:
    if entry is None:
        return None
    wanted = ctx.job.logprobs or 0
    top = {ctx.token_name(t): value for t, value in entry.top[:wanted]}
    return top | {ctx.token_name(token_id): entry.logprob}


def chunk(ctx: ResponseContext, choices: list[dict], usage_info: dict | None = None) -> dict:
    out: dict[str, Any] = {
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
    }
    if usage_info is not None:
        out["usage"] = usage_info
    return out
