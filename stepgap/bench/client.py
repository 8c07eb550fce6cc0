"""The async streaming client (aiohttp): send each request at its time, at most
`max_concurrency` at once, and time every chunk as it arrives.

Timing follows `vllm bench serve` (vllm/benchmarks/lib/endpoint_request_func.py,
`async_request_openai_completions`): a request's clock starts when its POST goes out
(after the concurrency limit let it), a chunk is timed when its bytes are read, before
parsing. It talks HTTP only: no torch, no engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from reference_engine.config import ConfigError
from stepgap.bench.apis import completion_body
from stepgap.bench.chunks import error_message, read_chunk
from stepgap.bench.config import BenchConfig
from stepgap.bench.plan import BenchRequest
from stepgap.bench.records import BenchOutcome, RequestResult, ResultBuilder
from stepgap.bench.sse import DONE, SSEParser

OnResult = Callable[[RequestResult], None]


async def run_benchmark(
    config: BenchConfig, requests: list[BenchRequest], on_result: OnResult | None = None
) -> BenchOutcome:
    connector = aiohttp.TCPConnector(limit=config.max_concurrency or 0)
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        card = await model_card(session, config)
        model = config.model or str(card.get("id"))
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        start = time.perf_counter()
        results = await _send_all(session, config, model, requests, start, on_result)
        duration = time.perf_counter() - start
    return BenchOutcome(model, card, tuple(results), duration, started, start)


async def model_card(session: aiohttp.ClientSession, config: BenchConfig) -> dict[str, Any]:
    """The served model's card from /v1/models (the one named `config.model`, else the
    first), as `vllm bench serve` finds its model; a one-line ConfigError if unreachable."""
    url = config.base_url + "/v1/models"
    try:
        async with session.get(url) as response:
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise ConfigError(f"cannot read {url}: {error or type(error).__name__}") from None
    cards = data.get("data") if isinstance(data, dict) else None
    if not cards:
        raise ConfigError(f"{url} lists no model")
    named = [c for c in cards if c.get("id") == config.model]
    return named[0] if named else cards[0]


async def _send_all(session, config, model, requests, start, on_result) -> list[RequestResult]:
    """Each request at its arrival time; the results in the order of `requests`."""
    limit = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
    tasks: dict[int, asyncio.Task] = {}
    for index in sorted(range(len(requests)), key=lambda i: requests[i].arrival_s):
        request = requests[index]
        delay = start + request.arrival_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        one = _send_one(session, config, model, request, start)
        tasks[index] = asyncio.create_task(_limited(one, limit, on_result))
    return [await tasks[i] for i in range(len(requests))]


async def _limited(send, limit: asyncio.Semaphore | None, on_result: OnResult | None):
    if limit is None:
        result = await send
    else:
        async with limit:
            result = await send
    if on_result is not None:
        on_result(result)
    return result


async def _send_one(
    session: aiohttp.ClientSession,
    config: BenchConfig,
    model: str,
    request: BenchRequest,
    start: float,
) -> RequestResult:
    builder = ResultBuilder(request)
    body = completion_body(config.api, model, request, config.logprobs)
    builder.sent_s = time.perf_counter() - start
    try:
        async with session.post(config.url, json=body) as response:
            if response.status != 200:
                builder.error = f"HTTP {response.status}: {await _error_text(response)}"
            else:
                await _read_stream(response, builder, start)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        builder.error = f"{type(error).__name__}: {error}"
    return builder.result()


async def _read_stream(response: aiohttp.ClientResponse, builder: ResultBuilder, start: float):
    parser, clock = SSEParser(), time.perf_counter
    async for data in response.content.iter_any():
        now = clock() - start  # first: parsing is the client's time, not the server's
        for payload in parser.feed(data):
            if payload != DONE:
                builder.add(read_chunk(json.loads(payload)), now)
    for payload in parser.close():
        if payload != DONE:
            builder.add(read_chunk(json.loads(payload)), clock() - start)


async def _error_text(response: aiohttp.ClientResponse) -> str:
    """The error's message, whichever server's shape (first line, 300 characters)."""
    text = await response.text(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = error_message(data) if isinstance(data, dict) else None
    lines = (message or text or response.reason or "").strip().splitlines()
    return lines[0][:300] if lines else ""
