"""The engine thread and the app in-process: runs rotate and close when idle, a broken
engine fails its requests and refuses more, a client leaving a plain request cancels it,
and at shutdown open streams drain (or, past the grace period, are cancelled and their
slots freed) before the engine thread stops, as a signal makes uvicorn do it."""

import asyncio
import dataclasses
import json
import threading
import time

import aiohttp
import pytest
import uvicorn

from reference_engine import model_config
from stepgap.bench.sse import DONE, SSEParser
from stepgap.serve.app import create_app
from stepgap.serve.config import ServeConfig
from stepgap.serve.protocol import parse_request, to_job
from stepgap.serve.server import bind, build_engine
from stepgap.serve.stats import LiveStats
from stepgap.serve.streams import RequestStream
from stepgap.serve.tokenizer import ByteTokenizer
from stepgap.serve.worker import EngineWorker

CONFIG = ServeConfig(model=model_config("ernie-4.5-tiny"), max_num_seqs=4, max_model_len=300)


@pytest.fixture(scope="module")
def engine():
    engine = build_engine(dataclasses.replace(CONFIG, device="cpu"))
    yield engine
    engine.close()


class Served:
    """The app on a uvicorn server in a thread; `stop()` is what SIGTERM triggers."""

    def __init__(self, engine, grace_s=30.0, max_run_steps=50_000):
        self.stats = LiveStats()
        self.worker = EngineWorker(engine, CONFIG.mode, self.stats, 0.2, max_run_steps)
        app = create_app(CONFIG, self.worker, self.stats)
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="critical", timeout_graceful_shutdown=grace_s)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self):
        self.server.should_exit = True


async def stream(url, max_tokens, on_first):
    """Token ids of one stream and whether it ended with [DONE]; `on_first` at its first."""
    body = {
        "prompt": [5, 6, 7],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "return_token_ids": True,
    }
    ids, done, parser = [], False, SSEParser()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/completions", json=body) as response,
        ):
            async for data in response.content.iter_any():
                for payload in parser.feed(data):
                    done = done or payload == DONE
                    if payload != DONE:
                        ids += json.loads(payload)["choices"][0]["token_ids"]
                        on_first.set()
    except aiohttp.ClientError:
        pass  # cut off by the server
    return ids, done


async def streams_then_stop(served, count, max_tokens):
    firsts = [asyncio.Event() for _ in range(count)]
    tasks = [asyncio.create_task(stream(served.url, max_tokens, e)) for e in firsts]
    for first in firsts:
        await first.wait()
    served.stop()
    return await asyncio.gather(*tasks)


def test_shutdown_lets_open_streams_finish_then_stops_the_engine(engine):
    served = Served(engine, grace_s=30)
    results = asyncio.run(streams_then_stop(served, 4, 40))
    served.thread.join(30)
    assert not served.thread.is_alive() and not served.worker._thread.is_alive()
    assert all(done and len(ids) == 40 for ids, done in results)
    snapshot = served.stats.snapshot()
    assert snapshot.outcomes == {"length": 4} and snapshot.running == 0


def test_past_the_grace_period_streams_are_cancelled_and_slots_freed(engine):
    served = Served(engine, grace_s=0.3)
    results = asyncio.run(streams_then_stop(served, 4, 290))
    served.thread.join(30)
    assert not served.thread.is_alive() and not served.worker._thread.is_alive()
    assert all(not done and 0 < len(ids) < 290 for ids, done in results)
    snapshot = served.stats.snapshot()
    assert snapshot.outcomes == {"abort": 4} and snapshot.running == 0
    assert snapshot.open_requests == 0


async def worker_jobs(worker, count, max_tokens):
    """Submit `count` jobs straight to a started worker; each stream's events."""
    tokenizer = ByteTokenizer(CONFIG.model.vocab_size)
    body = {"prompt": [5, 6], "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    job = to_job(parse_request(body), CONFIG, tokenizer)
    streams = [RequestStream(i) for i in range(count)]
    worker.start(asyncio.get_running_loop())
    for stream in streams:
        worker.submit(stream.request_id, job, stream)
    events = []
    for stream in streams:
        got = []
        while not stream.done:
            got += await stream.next_batch()
        events.append(got)
    await asyncio.to_thread(worker.stop, 30)
    return events


def test_busy_runs_rotate_without_losing_a_request(engine):
    stats = LiveStats()
    worker = EngineWorker(engine, CONFIG.mode, stats, idle_close_s=0.2, max_run_steps=5)
    events = asyncio.run(worker_jobs(worker, 10, 6))
    tokens = [sum(len(e.token_ids) for e in got if hasattr(e, "token_ids")) for got in events]
    assert tokens == [6] * 10 and stats.snapshot().outcomes == {"length": 10}
    assert stats.snapshot().steps > 5  # more than one run's worth


def test_a_broken_engine_fails_its_requests_and_reports_unhealthy(engine, monkeypatch):
    calls = []

    def launch(prepared, timed):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return original(prepared, timed)

    original = engine.runner.launch
    monkeypatch.setattr(engine.runner, "launch", launch)
    stats = LiveStats()
    worker = EngineWorker(engine, CONFIG.mode, stats)
    events = asyncio.run(worker_jobs(worker, 3, 20))
    assert all(type(got[-1]).__name__ == "Failed" for got in events)
    assert "device lost" in events[0][-1].error.message and not stats.healthy
    monkeypatch.undo()
    engine.device.synchronize()


def test_a_client_leaving_a_plain_request_cancels_it(engine):
    served = Served(engine)

    async def leave():
        body = {"prompt": [5, 6], "max_tokens": 250, "temperature": 0, "ignore_eos": True}
        _, writer = await asyncio.open_connection("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
        data = json.dumps(body).encode()
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(data) + data)
        await writer.drain()
        while served.stats.snapshot().running == 0:
            await asyncio.sleep(0.01)
        writer.close()
        for _ in range(300):
            if served.stats.snapshot().outcomes.get("abort"):
                break
            await asyncio.sleep(0.01)

    asyncio.run(leave())
    served.stop()
    served.thread.join(30)
    snapshot = served.stats.snapshot()
    assert snapshot.outcomes == {"abort": 1} and snapshot.running == 0
