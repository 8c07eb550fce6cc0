"""A benchmark's figures with `vllm bench serve`'s definitions and key names
(vllm/benchmarks/serve.py, `calculate_metrics` and the result dict of `benchmark`).

Per successful request: TTFT = first chunk with choices - sent; ITL = the gaps between
its chunks with choices (per chunk, not per token); E2EL = last such chunk - sent;
TPOT = (E2EL - TTFT) / (output tokens - 1), for requests with more than one token.
Throughputs divide by the benchmark's duration. Where vLLM reports 0 for an empty sample,
these report NaN (null in JSON).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from stepgap.bench.config import BenchConfig
from stepgap.bench.records import RequestResult
from stepgap.metrics import bench_stats


def serving_metrics(
    results: Sequence[RequestResult], duration_s: float, config: BenchConfig
) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    inputs = sum(len(r.request.prompt) for r in ok)
    outputs = sum(r.output_tokens for r in ok)
    figures: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "total_input_tokens": inputs,
        "total_output_tokens": outputs,
        "request_throughput": len(ok) / duration_s,
        "output_throughput": outputs / duration_s,
        "total_token_throughput": (inputs + outputs) / duration_s,
        "max_concurrency": config.max_concurrency,
        "request_rate": _rate(config.request_rate),
        "max_concurrent_requests": peak_concurrency(ok),
        "max_output_tokens_per_s": peak_tokens_per_s(ok),
    }
    for name, values in latency_samples(ok, config).items():
        figures |= bench_stats(np.asarray(values) * 1e3, f"{name}_ms")
    return figures


def latency_samples(ok: Sequence[RequestResult], config: BenchConfig) -> dict[str, list[float]]:
    """Seconds: TTFT, TPOT, ITL and E2EL samples (and the client's queueing, with a limit)."""
    ttft = [r.chunk_times_s[0] - r.sent_s for r in ok]
    samples = {
        "ttft": ttft,
        "tpot": [
            (r.latency_s - first) / (r.output_tokens - 1)
            for r, first in zip(ok, ttft, strict=True)
            if r.output_tokens > 1
        ],
        "itl": [b - a for r in ok for a, b in itertools.pairwise(r.chunk_times_s)],
        "e2el": [r.latency_s for r in ok],
    }
    if config.max_concurrency is not None:
        samples["client_queue_time"] = [r.sent_s - r.request.arrival_s for r in ok]
    return samples


def peak_concurrency(ok: Sequence[RequestResult]) -> int:
    """Most requests in flight at once (sent, last chunk not yet in)."""
    events = sorted(
        [(r.sent_s, 1) for r in ok] + [(r.sent_s + r.latency_s, -1) for r in ok],
        key=lambda e: (e[0], e[1]),
    )
    return max(itertools.accumulate(delta for _, delta in events), default=0)


def peak_tokens_per_s(ok: Sequence[RequestResult]) -> float:
    """Most tokens received within one whole second of the benchmark."""
    seconds = [int(t) for r in ok for t in r.token_times_s]
    if not seconds:
        return 0.0
    return float(np.bincount(np.asarray(seconds) - min(seconds)).max())


def _rate(rate: float | None) -> float | str:
    if rate is None:
        return "workload"
    return "inf" if math.isinf(rate) else rate
