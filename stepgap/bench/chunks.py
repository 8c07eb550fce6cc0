"""What one streamed chunk says, whichever server sent it (see stepgap.bench.apis).

Token ids come from, in order: a choice's `token_ids` (vLLM, SGLang, TensorRT-LLM, stepgap
serve), `completion_token_ids` (FastDeploy), or its logprobs' tokens named
"token_id:<id>" (vLLM's `return_tokens_as_token_ids`). Every choice of the chunk counts
(FastDeploy may pack several steps' choices in one). Per token, the logprob and the top-2
margin (top-1 minus top-2 logprob: the logit margin the near-tie classifier reads) when
the server sent at least two top logprobs. Errors: vLLM's `{"error": {...}}` and
SGLang's / TensorRT-LLM's flat `{"object": "error", "message": ...}`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

ID_PREFIX = "token_id:"


class ChunkUpdate(NamedTuple):
    """The tokens and end of one chunk (a NamedTuple: one is built per streamed chunk)."""

    has_choices: bool  # a choice chunk (vllm bench serve times these), not a usage-only one
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float | None, ...] = ()
    margins: tuple[float, ...] = ()
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    completion_tokens: int | None = None  # from `usage`
    error: str | None = None


def read_chunk(data: Any) -> ChunkUpdate:
    if type(data) is not dict:
        return ChunkUpdate(False, error=f"chunk is not a JSON object: {str(data)[:200]}")
    if "error" in data or data.get("object") == "error":
        return ChunkUpdate(False, error=error_message(data))
    choices = data.get("choices")
    usage = data.get("usage")
    completion_tokens = usage.get("completion_tokens") if type(usage) is dict else None
    if not choices:
        return ChunkUpdate(False, completion_tokens=completion_tokens)
    ids: list[int] = []
    logprobs: list[float | None] = []
    margins: list[float] = []
    finish = stop = None
    for choice in choices:
        choice_ids = _token_ids(choice)
        ids += choice_ids
        choice_logprobs, choice_margins = _logprobs(choice.get("logprobs"), len(choice_ids))
        logprobs += choice_logprobs
        margins += choice_margins
        finish = choice.get("finish_reason") or finish
        stop = choice.get("stop_reason", choice.get("matched_stop")) or stop
    return ChunkUpdate(
        True, tuple(ids), tuple(logprobs), tuple(margins), finish, stop, completion_tokens
    )


def error_message(data: dict[str, Any]) -> str | None:
    """The message of an error body or chunk, whichever server's shape; None if not one."""
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if isinstance(error, str):
        return error
    if data.get("object") == "error":
        return str(data.get("message") or data)
    return None


def _token_ids(choice: dict[str, Any]) -> list[int]:
    ids = choice.get("token_ids")
    if ids is None:
        ids = choice.get("completion_token_ids")
    if type(ids) is list:
        return ids
    tokens = (choice.get("logprobs") or {}).get("tokens") or []
    if tokens and all(isinstance(t, str) and t.startswith(ID_PREFIX) for t in tokens):
        return [int(t.removeprefix(ID_PREFIX)) for t in tokens]
    return []


def _logprobs(block: Any, count: int) -> tuple[list[float | None], list[float]]:
    """Per token: its logprob, and its top-1 minus top-2 logprob (NaN if fewer than 2)."""
    if type(block) is not dict or not count:
        return [None] * count, [math.nan] * count
    values = list(block.get("token_logprobs") or [])[:count]
    tops = list(block.get("top_logprobs") or [])[:count]
    values += [None] * (count - len(values))
    tops += [None] * (count - len(tops))
    return values, [_margin(top) for top in tops]


def _margin(top: Any) -> float:
    if not isinstance(top, dict) or len(top) < 2:
        return math.nan
    best, second = sorted((float(v) for v in top.values()), reverse=True)[:2]
    return best - second
