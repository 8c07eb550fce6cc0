"""The HTTP side: an OpenAI-compatible FastAPI app around an `EngineWorker`.

Routes: `POST /v1/completions` (streamed or not), `GET /v1/models`, `GET /health`,
`GET /metrics` (Prometheus text), `GET /version`. Every error is an OpenAI-style JSON
body (stepgap.serve.errors). A client that disconnects cancels its request: a stream's
generator is cancelled by Starlette on `http.disconnect`, a plain request watches for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from stepgap.serve import prometheus
from stepgap.serve.completions import full_response, sse_stream
from stepgap.serve.config import ServeConfig
from stepgap.serve.errors import APIError, ErrorType, bad_request
from stepgap.serve.protocol import CompletionJob, parse_request, to_job
from stepgap.serve.responses import ResponseContext
from stepgap.serve.stats import LiveStats
from stepgap.serve.streams import RequestStream
from stepgap.serve.tokenizer import ByteTokenizer
from stepgap.serve.worker import EngineWorker

_HTTP_ERRORS = {404: ErrorType.NOT_FOUND, 405: ErrorType.METHOD_NOT_ALLOWED}


def create_app(config: ServeConfig, worker: EngineWorker, stats: LiveStats) -> FastAPI:
    """The app; its lifespan starts the engine thread and stops it at shutdown."""
    server = CompletionServer(config, worker, stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start(asyncio.get_running_loop())
        yield
        server.closing = True
        await asyncio.to_thread(worker.stop, 30.0)

    app = FastAPI(title="stepgap serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    app.post("/v1/completions")(server.completions)
    app.get("/v1/models")(server.models)
    app.get("/health")(server.health)
    app.get("/metrics")(server.metrics)
    app.get("/version")(server.version)
    return app


class CompletionServer:
    """The route handlers, over one worker."""

    def __init__(self, config: ServeConfig, worker: EngineWorker, stats: LiveStats) -> None:
        self.config, self.worker, self.stats = config, worker, stats
        self.tokenizer = ByteTokenizer(config.model.vocab_size)
        self.closing = False
        self._ids = itertools.count()
        self._created = int(time.time())

    async def completions(self, request: Request) -> Response:
        try:
            job = self._job(await request.body())
        except APIError:
            self.stats.count_rejected()
            raise
        stream = RequestStream(next(self._ids))
        ctx = ResponseContext.new(job, self.config.model_name, self.tokenizer)
        self.stats.request_opened()
        self.worker.submit(stream.request_id, job, stream)
        if job.stream:
            body = self._closing(sse_stream(stream, ctx), stream)
            return StreamingResponse(body, media_type="text/event-stream")
        try:
            answer = await _unless_disconnected(full_response(stream, ctx), request)
        finally:
            self._close(stream)
        return JSONResponse(answer) if answer is not None else Response(status_code=499)

    def _job(self, raw: bytes) -> CompletionJob:
        if self.closing or not self.stats.healthy:
            raise APIError("the server is not serving requests", ErrorType.UNAVAILABLE)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("the request body is not valid JSON") from None
        return to_job(parse_request(data), self.config, self.tokenizer)

    async def _closing(self, body: AsyncIterator[str], stream: RequestStream) -> AsyncIterator[str]:
        try:
            async for text in body:
                yield text
        finally:
            self._close(stream)

    def _close(self, stream: RequestStream) -> None:
        """The answer is complete or the client is gone: free the engine's slot if needed."""
        if not stream.done:
            self.worker.cancel(stream.request_id)
        self.stats.request_closed()

    async def models(self) -> dict[str, Any]:
        name = self.config.model_name
        card = {"id": name, "object": "model", "created": self._created, "owned_by": "stepgap"}
        card |= {"root": name, "parent": None, "max_model_len": self.config.max_model_len}
        return {"object": "list", "data": [card]}

    async def health(self) -> Response:
        if not self.stats.healthy or self.closing:
            raise APIError("the engine is not serving", ErrorType.UNAVAILABLE)
        return Response(status_code=200)

    async def metrics(self) -> PlainTextResponse:
        labels = {"model_name": self.config.model_name, "mode": self.config.mode.value}
        text = prometheus.render(self.stats.snapshot(), labels)
        return PlainTextResponse(text, media_type=prometheus.CONTENT_TYPE)

    async def version(self) -> dict[str, str]:
        return {"version": metadata.version("stepgap")}


async def _unless_disconnected(answer: Awaitable[dict], request: Request) -> dict | None:
    """The answer, or None if the client disconnected first."""
    waiting = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_disconnected(request))
    done, _ = await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in (waiting, gone):
        if task not in done:
            task.cancel()
    return waiting.result() if waiting in done else None


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=int(error.status))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    kind = _HTTP_ERRORS.get(error.status_code, ErrorType.BAD_REQUEST)
    return await _api_error(request, APIError(str(error.detail), kind))


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    message = f"internal error: {type(error).__name__}: {error}"
    return await _api_error(request, APIError(message, ErrorType.INTERNAL))
