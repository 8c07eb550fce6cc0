"""Write the Kineto (PyTorch profiler) trace fixtures of `stepgap analyze`'s hard cases.

Each reproduces a way real traces broke the analysis (issue 14), laid out as Kineto writes
its Chrome traces — events one per block, µs with exactly three decimals (integer ns):

- `training_two_threads.trace.json.gz`: a training loop, one `ProfilerStep#N` per iteration
  with a `DistributedDataParallel.forward` range inside; the backward pass is launched from
  a second thread (PyTorch's autograd thread), the optimizer from the main thread.
- `sglang_overlap.trace.json.gz`: SGLang-style `step[DECODE bs=32]` / `step[EXTEND bs=4
  toks=2048]` ranges on a scheduler thread while a forward thread launches; kernels on
  stream 7, the output copy on stream 9, and each step's first kernel starts before the
  previous step's copy ends (overlapping steps on two streams).
- `epoch_timestamps.trace.json.gz`: absolute Unix-epoch µs timestamps (no
  `baseTimeNanoseconds`) and sub-µs gaps (0.8 µs, 1.3 µs, 0.35 µs...).
- `vllm_graph_sync.trace.json.gz`: vLLM-style `execute_context_0(0)_generation_32(32)`
  ranges (a `ProfilerStep#N` every four of them: a profiler schedule), each replaying a
  CUDA graph of 40 kernels (one cudaGraphLaunch, one correlation id); after each step a
  `postprocess` range copies the sampled tokens to pageable host memory
  (cudaMemcpyAsync, which blocks until the copy is done) and synchronizes: the blocking
  DtoH sync before every launch.

The shapes (times, durations) come from a seeded generator; the tests do not read them
from here but recompute every figure from the written JSON. Run
`python tests/data/analyze/make_trace_fixtures.py` to rewrite all four.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
PID = 4100
BASE_NS = 1_790_857_026_000_000_000
DEVICE = {"id": 0, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85017493504}
_NUMBER = re.compile(r'"@(-?\d+\.\d{3})"')
HTOD, DTOH = "HtoD (Pinned -> Device)", "DtoH (Device -> Pageable)"
PINNED_DTOH = "DtoH (Device -> Pinned)"


def us(ns: int) -> str:
    """Kineto's µs text for `ns`: three decimals, exactly."""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"@{sign}{ns // 1000}.{ns % 1000:03d}"


class Trace:
    """Events of one process in integer ns; written as Kineto lays a trace out."""

    def __init__(self, base_ns: int | None = BASE_NS) -> None:
        self.base_ns = base_ns
        self.events: list[dict] = [
            {"ph": "M", "name": "process_name", "pid": PID, "tid": 0, "args": {"name": "python"}}
        ]
        self.correlation = 1000

    def range(self, name: str, start: int, end: int, tid: int) -> None:
        self._x("user_annotation", name, PID, tid, start, end, {"External id": 0})

    def call(self, name: str, start: int, end: int, tid: int) -> int:
        self.correlation += 1
        args = {"External id": self.correlation, "cbid": 211, "correlation": self.correlation}
        self._x("cuda_runtime", name, PID, tid, start, end, args)
        return self.correlation

    def op(self, cat: str, name: str, start: int, end: int, stream: int, correlation: int):
        args = {
            "External id": correlation,
            "device": 0,
            "context": 1,
            "stream": stream,
            "correlation": correlation,
        }
        self._x(cat, name, 0, stream, start, end, args)

    def kernel(self, at: int, start: int, end: int, tid: int, stream: int = 7) -> None:
        correlation = self.call("cudaLaunchKernel", at, at + 3_000, tid)
        self.op("kernel", f"kernel_{correlation}", start, end, stream, correlation)

    def copy(self, name, direction, at, call_end, start, end, tid, stream=7) -> None:
        """A copy call [at, call_end] and its memcpy on the device [start, end]."""
        correlation = self.call(name, at, call_end, tid)
        self.op("gpu_memcpy", f"Memcpy {direction}", start, end, stream, correlation)

    def _x(self, cat, name, pid, tid, start, end, args) -> None:
        time = {"ts": us(start), "dur": us(end - start)}
        event = {"ph": "X", "cat": cat, "name": name, "pid": pid, "tid": tid, **time}
        self.events.append({**event, "args": args})

    def write(self, path: Path) -> None:
        header = {"schemaVersion": 1, "deviceProperties": [DEVICE]}
        if self.base_ns is not None:
            header["baseTimeNanoseconds"] = self.base_ns
        head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in header.items())
        events = ",\n".join(
            "  " + json.dumps(e, indent=2).replace("\n", "\n  ") for e in self.events
        )
        text = f'{{\n{head},\n  "traceEvents": [\n{events}\n  ],\n  "traceName": "fixture"\n}}\n'
        with gzip.GzipFile(path, "wb", mtime=0) as out:
            out.write(_NUMBER.sub(r"\1", text).encode())


def training_two_threads(rng: random.Random) -> Trace:
    """Six iterations: forward on the main thread, backward from the autograd thread."""
    trace, main, autograd = Trace(), 1, 2
    host, device = 1_000_000, 0
    for i in range(6):
        begin = host
        forward_end = host + 60_000
        trace.range("DistributedDataParallel.forward", host + 1_000, forward_end, main)
        for k in range(5):
            at = host + 2_000 + k * 10_000
            start = max(at + 5_000, device + rng.randint(200, 900))
            end = start + rng.randint(4_000, 9_000)
            trace.kernel(at, start, end, main)
            device = end
        for k in range(8):  # backward, launched by the autograd thread
            at = forward_end + 3_000 + k * 9_000
            start = max(at + 5_000, device + rng.randint(100, 600))
            end = start + rng.randint(5_000, 12_000)
            trace.kernel(at, start, end, autograd)
            device = end
        at = forward_end + 80_000  # optimizer step, on the main thread
        start = max(at + 5_000, device + rng.randint(300, 800))
        trace.kernel(at, start, start + 20_000, main)
        device = start + 20_000
        host = max(at + 10_000, device + 2_000) + rng.randint(100_000, 200_000)  # data loading
        trace.range(f"ProfilerStep#{i + 3}", begin, host - 50_000, main)
    return trace


def sglang_overlap(rng: random.Random) -> Trace:
    """Ten steps whose work overlaps the previous step's output copy on another stream."""
    trace, scheduler, forward = Trace(), 10, 11
    host, compute, copy = 2_000_000, 0, 0
    for i in range(10):
        name = "step[EXTEND bs=4 toks=2048]" if i == 0 else "step[DECODE bs=32]"
        begin = host
        at = host + 4_000  # the forward thread picks the batch up and launches
        for k in range(6):
            start = max(at + k * 3_000 + 5_000, compute + rng.randint(300, 700))
            end = start + rng.randint(6_000, 9_000)
            trace.kernel(at + k * 3_000, start, end, forward)
            compute = end
        at = at + 20_000
        start = max(at + 4_000, compute + 500, copy)
        end = start + rng.randint(8_000, 14_000)  # the copy runs while the next step starts
        trace.copy("cudaMemcpyAsync", PINNED_DTOH, at, at + 2_000, start, end, forward, 9)
        copy = end
        host = at + 6_000 + (rng.randint(1_000, 3_000) if i % 3 else rng.randint(30_000, 60_000))
        trace.range(name, begin, host - 500, scheduler)
    return trace


def epoch_timestamps(rng: random.Random) -> Trace:
    """Eight ProfilerSteps on the Unix-epoch µs clock with gaps under a microsecond."""
    trace, main = Trace(base_ns=None), 1
    host = 1_790_857_026_123_456_789  # ns since the epoch: written as epoch µs
    device = host + 40_000
    tiny_gaps = (800, 1_300, 350, 2_000, 950, 1_000, 1_700)
    for i in range(8):
        begin = host
        for k in range(3):
            at = host + 1_000 + k * 2_000
            start = device if k == 0 else device + rng.randint(1, 400)
            end = start + rng.randint(3_000, 6_000)
            trace.kernel(at, start, end, main)
            device = end
        if i < len(tiny_gaps):
            device += tiny_gaps[i]
        host += 9_000
        trace.range(f"ProfilerStep#{i}", begin, host - 1, main)
    return trace


def vllm_graph_sync(rng: random.Random) -> Trace:
    """Twelve vLLM-style steps: an input copy, a 40-kernel CUDA graph, and the sampled
    tokens copied to pageable host memory (blocking) in a `postprocess` range."""
    trace, main = Trace(), 1
    host, device = 3_000_000, 0
    profiler_begin = host
    for i in range(12):
        begin, at = host, host + 2_000
        start = max(at + 4_000, device + 300)
        trace.copy("cudaMemcpyAsync", HTOD, at, at + 3_000, start, start + 2_000, main)
        graph_at = host + 8_000
        correlation = trace.call("cudaGraphLaunch", graph_at, graph_at + 12_000, main)
        start = max(graph_at + 6_000, start + 2_500)
        for k in range(40):
            end = start + rng.randint(2_000, 5_000)
            trace.op("kernel", f"graph_kernel_{k}", start, end, 7, correlation)
            start = end + rng.randint(0, 300)
        post = graph_at + 15_000
        start = max(post + 4_000, end + 400)
        copy_end = start + 1_500
        returns = copy_end + rng.randint(8_000, 15_000)  # the host wakes up late
        trace.copy("cudaMemcpyAsync", DTOH, post + 1_000, returns, start, copy_end, main)
        trace.call("cudaStreamSynchronize", returns + 500, returns + 2_000, main)
        trace.range("postprocess", post, returns + 20_000, main)
        trace.range("execute_context_0(0)_generation_32(32)", begin, returns + 21_000, main)
        device, host = copy_end, returns + rng.randint(30_000, 60_000)
        trace.range("schedule", returns + 22_000, host - 500, main)
        if i % 4 == 3:
            trace.range(f"ProfilerStep#{i // 4}", profiler_begin, host - 200, main)
            profiler_begin = host - 100
    return trace


FIXTURES = {
    "training_two_threads.trace.json.gz": training_two_threads,
    "sglang_overlap.trace.json.gz": sglang_overlap,
    "epoch_timestamps.trace.json.gz": epoch_timestamps,
    "vllm_graph_sync.trace.json.gz": vllm_graph_sync,
}


def main() -> None:
    for seed, (name, make) in enumerate(FIXTURES.items()):
        make(random.Random(seed)).write(HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
