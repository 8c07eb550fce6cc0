"""How fast `stepgap bench` ingests a stream, and how late it times each token.

A stand-in server in another process streams tokens at a known pace: each token's id is
the `CLOCK_MONOTONIC` time (µs) at which it was written. The real client (`run_benchmark`)
reads them; it stamps each chunk with `time.perf_counter`, the same clock on Linux, so
per token: delay = client stamp - write time (loopback + the client's own lag), and the
ITL error = the client's gap between two tokens - the server's. Raising the aggregate rate
until the delays grow shows the rate the client ingests before its own delays show in ITL.

    python -m stepgap.bench.calibrate            # the table, on this machine
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from stepgap.bench.client import run_benchmark
from stepgap.bench.config import BenchConfig
from stepgap.bench.plan import BenchRequest
from stepgap.bench.records import BenchOutcome

RATES = (1_000, 2_000, 5_000, 10_000, 20_000, 40_000)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nConnection: close\r\n"


@dataclass(frozen=True)
class CalibrationPoint:
    """One pace: what was asked, what the client took in, and how late it saw tokens."""

    streams: int
    target_tok_s: float
    achieved_tok_s: float
    tokens: int
    delay_p50_us: float
    delay_p99_us: float
    itl_error_p50_us: float
    itl_error_p99_us: float
    client_cpu_us_per_token: float  # the client's own CPU: 1e6 / this = one core's ingest

    @property
    def cpu_bound_tok_s(self) -> float:
        """Tokens per second the client could ingest with one core to itself."""
        return 1e6 / self.client_cpu_us_per_token


# -- the stand-in server (its own process) -------------------------------------------
def _serve(port_out: multiprocessing.SimpleQueue) -> None:
    async def listen() -> None:
        server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=4096)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(listen())


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    length = int({k.strip().lower(): v for k, v in fields.items()}.get(b"content-length", 0))
    body = json.loads(await reader.readexactly(length)) if length else {}
    if head.startswith(b"GET"):
        payload = json.dumps({"data": [{"id": "pace"}]}).encode()
        writer.write(HEAD % b"application/json" + b"Content-Length: %d\r\n\r\n" % len(payload))
        writer.write(payload)
    else:
        await _stream(writer, body)
    await writer.drain()
    writer.close()


async def _stream(writer: asyncio.StreamWriter, body: dict) -> None:
    """`max_tokens` tokens, one per `interval_us` (from the model name `pace-<us>`), the
    first `seed` µs late: the streams' phases spread their tokens evenly."""
    interval = int(body["model"].rsplit("-", 1)[1]) / 1e6
    writer.write(HEAD % b"text/event-stream" + b"\r\n")
    start = time.monotonic() + body["seed"] / 1e6
    for i in range(body["max_tokens"]):
        await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
        now_us = time.monotonic_ns() // 1000
        chunk = {"choices": [{"index": 0, "text": "", "token_ids": [now_us]}]}
        writer.write(b"data: %s\n\n" % json.dumps(chunk).encode())
        if i % 8 == 0:
            await writer.drain()
    writer.write(b"data: [DONE]\n\n")


# -- the measurement -------------------------------------------------------------------
def measure(url: str, rate: float, streams: int = 64, seconds: float = 2.0) -> CalibrationPoint:
    """Stream `rate` tokens/s in total over `streams` concurrent streams for `seconds`."""
    interval_us = max(1, round(streams / rate * 1e6))
    tokens = max(2, int(seconds * 1e6 / interval_us))
    config = BenchConfig(base_url=url, model=f"pace-{interval_us}", timeout_s=seconds * 20 + 30)
    phases = [i * interval_us // streams for i in range(streams)]
    requests = [
        BenchRequest(i, (1,), tokens, 0.0, 0, 1.0, phases[i], True, 0.0) for i in range(streams)
    ]
    cpu = time.process_time()
    outcome = asyncio.run(run_benchmark(config, requests))
    return _point(outcome, streams, rate, time.process_time() - cpu)


def _point(outcome: BenchOutcome, streams: int, rate: float, cpu_s: float) -> CalibrationPoint:
    delays, itl_errors, count = [], [], 0
    for result in outcome.results:
        sent = np.asarray(result.token_ids, dtype=float)
        seen = (np.asarray(result.token_times_s) + outcome.origin_s) * 1e6
        delays.append(seen - sent)
        itl_errors.append(np.abs(np.diff(seen) - np.diff(sent)))
        count += len(sent)
    delay, itl = np.concatenate(delays), np.concatenate(itl_errors)
    times = [t for r in outcome.results for t in (r.token_times_s[:1] + r.token_times_s[-1:])]
    span = max(times) - min(times) if times else 0.0
    delay_p50, delay_p99 = (float(x) for x in np.percentile(delay, [50, 99]))
    itl_p50, itl_p99 = (float(x) for x in np.percentile(itl, [50, 99]))
    achieved = count / span if span > 0 else math.nan
    return CalibrationPoint(
        streams, rate, achieved, count, delay_p50, delay_p99, itl_p50, itl_p99, cpu_s / count * 1e6
    )


def run(rates: tuple[float, ...] = RATES, streams: int = 64, seconds: float = 2.0):
    """Start the stand-in server, measure each rate, stop it."""
    context = multiprocessing.get_context("spawn")
    ports = context.SimpleQueue()
    server = context.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{ports.get()}"
        return [measure(url, rate, streams, seconds) for rate in rates]
    finally:
        server.terminate()
        server.join(5)


def main() -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} (other work on the machine shows here)")
    print(
        f"{'streams':>7} {'target tok/s':>12} {'ingested tok/s':>14} {'delay p50/p99 µs':>18} "
        f"{'ITL error p50/p99 µs':>21} {'client CPU µs/token':>19}"
    )
    for p in run():
        print(
            f"{p.streams:>7} {p.target_tok_s:>12,.0f} {p.achieved_tok_s:>14,.0f} "
            f"{p.delay_p50_us:>8,.0f} / {p.delay_p99_us:>7,.0f} "
            f"{p.itl_error_p50_us:>10,.0f} / {p.itl_error_p99_us:>8,.0f} "
            f"{p.client_cpu_us_per_token:>19.1f}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
