"""Benchmark: `stepgap analyze` against HolisticTraceAnalysis on a large synthetic Kineto trace.

Generates a PyTorch-profiler (Kineto) Chrome trace of a decode loop — ProfilerStep ranges, a
vLLM-style step range per step, aten ops, cudaLaunchKernel / cudaMemcpyAsync / cudaStreamSynchronize
runtime calls with correlation ids, kernels, H2D/D2H copies, memsets, ac2g flow events, laid
out as Kineto writes them — with known step gaps. Then it times, each in its own subprocess,
`stepgap analyze` (the library call: read, steps, summary) and HolisticTraceAnalysis's
idle-time analysis (`TraceAnalysis(...).get_idle_time_breakdown()`, PyPI `traceinsight`) on
the same file: wall time and peak RSS side by side, with stepgap's gap and idle totals
beside the generator's truth.

    python benchmarks/analyze_bench.py                    # 4M events, ~1 GB: the issue's size
    python benchmarks/analyze_bench.py --events 300000 --profiler-step-every 1 --gzip

HTA's parser tags every event with its ProfilerStep by a loop over all steps, so its time
grows with events x ProfilerSteps: `--profiler-step-every` sets how many decode steps one
ProfilerStep spans (1: a `prof.step()` per decode step, as a profiled decode loop has).
HTA is not a stepgap dependency: install `traceinsight` (with pandas < 3, which it was
written for) into a separate environment and pass its interpreter with --hta-python
(default: this interpreter, if it imports `hta`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stepgap.environment import host_summary

BASE_TIME_NS = 1_790_000_000_000_000_000
HOST_PID, HOST_TID, DEVICE, STREAM = 4242, 4242, 0, 7
HOST = (HOST_PID, HOST_TID)
SIDE = 13  # a side stream with one memset per step: two streams, as engines have
LAUNCH, MEMCPY, MEMSET = "cudaLaunchKernel", "cudaMemcpyAsync", "cudaMemsetAsync"
ENGINE_STEP = "execute_context_0(0)_generation_32(32)"  # vLLM's step annotation (analyze/rules.py)
KERNEL_NAMES = (
    "void at::native::vectorized_elementwise_kernel<4, at::native::AddFunctor<float>>",
    "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn",
    "void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>, true>",
    "void vllm::rms_norm_kernel<c10::BFloat16>(c10::BFloat16*, c10::BFloat16 const*, int)",
    "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>>",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::ArgMaxOps>>",
)
OP_NAMES = ("aten::add", "aten::mm", "aten::_flash_attention_forward", "aten::rms_norm")
OP_NAMES += ("aten::silu", "aten::argmax")


# -- the trace, event by event, in Kineto's own layout -----------------------------------------
def _us(ns: int) -> str:
    """Kineto prints µs with exactly three decimals (ns resolution)."""
    return f"{ns // 1000}.{ns % 1000:03d}"


def _x(cat: str, name: str, where: tuple[int, int], ts_ns: int, dur_ns: int, args: str) -> str:
    pid, tid = where
    return (
        f'  {{\n    "ph": "X",\n    "cat": "{cat}",\n    "name": "{name}",\n'
        f'    "pid": {pid},\n    "tid": {tid},\n    "ts": {_us(ts_ns)},\n'
        f'    "dur": {_us(dur_ns)}\n    ,\n    "args": {{\n      {args}\n    }}\n  }}'
    )


def _flow(phase: str, correlation: int, where: tuple[int, int], ts_ns: int) -> str:
    pid, tid = where
    bind = ', "bp": "e"' if phase == "f" else ""
    return (
        f'  {{\n    "ph": "{phase}", "id": {correlation}, "pid": {pid}, "tid": {tid}, '
        f'"ts": {_us(ts_ns)},\n    "cat": "ac2g", "name": "ac2g"{bind}\n  }}'
    )


def _gpu_args(correlation: int, stream: int, extra: str = "") -> str:
    return (
        f'"External id": {correlation},\n      "queued": 0, "device": {DEVICE}, "context": 1,\n'
        f'      "stream": {stream}, "correlation": {correlation}{extra}'
    )


KERNEL_EXTRA = (
    ',\n      "registers per thread": 32,\n      "shared memory": 0,\n'
    '      "blocks per SM": 0.969697,\n      "warps per SM": 3.878788,\n'
    '      "grid": [128, 1, 1],\n      "block": [128, 1, 1],\n'
    '      "est. achieved occupancy %": 6'
)


@dataclass
class Truth:
    """What the generator knows: the device interval of every step and the busy union."""

    step_starts_ns: list[int]
    step_ends_ns: list[int]
    busy_union_ns: int
    events: int


class DecodeLoop:
    """A decode loop: the host launches a step's work faster than the device runs it, waits
    for its output copy, post-processes (the step gap), then launches the next step."""

    def __init__(self, kernels_per_step: int, seed: int, profiler_step_every: int = 1) -> None:
        self.kernels_per_step = kernels_per_step
        self.profiler_step_every = profiler_step_every
        self.profiler_step_begin_ns = 0
        self.rng = random.Random(seed)
        self.host_ns = 1_000_000
        self.device_free_ns = 0
        self.side_free_ns = 0
        self.correlation = 1
        self.truth = Truth([], [], 0, 0)

    def _launch(self, out: list[str], cat: str, name: str, api: str, dur: int, stream=STREAM):
        """A runtime call on the host and the device op it enqueues (after launch latency)."""
        rng, corr = self.rng, self.correlation
        self.correlation += 1
        api_ts = self.host_ns
        api_dur = rng.randint(2500, 5000)
        out.append(_x("cuda_runtime", api, HOST, api_ts, api_dur, _runtime(corr)))
        queue_free = self.device_free_ns if stream == STREAM else self.side_free_ns
        start = max(api_ts + rng.randint(4000, 7000), queue_free + rng.randint(800, 2000))
        extra = KERNEL_EXTRA if cat == "kernel" else ',\n      "bytes": 4096'
        args = _gpu_args(corr, stream, extra)
        out.append(_x(cat, name, (DEVICE, stream), start, dur, args))
        out.append(_flow("s", corr, HOST, api_ts))
        out.append(_flow("f", corr, (DEVICE, stream), start))
        self.host_ns = api_ts + api_dur + rng.randint(500, 1500)
        if stream == STREAM:
            self.device_free_ns = start + dur
        else:
            self.side_free_ns = start + dur
        return start, start + dur

    def step(self, index: int) -> list[str]:
        rng, out = self.rng, []
        if index % self.profiler_step_every == 0:
            self.profiler_step_begin_ns = self.host_ns
        self.host_ns += rng.randint(2000, 4000)
        model_begin = self.host_ns
        h2d = rng.randint(1500, 3000)
        busy = [self._launch(out, "gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", MEMCPY, h2d)]
        for k in range(self.kernels_per_step):
            op_begin = self.host_ns
            self.host_ns += rng.randint(1000, 3000)
            kernel = KERNEL_NAMES[k % len(KERNEL_NAMES)]
            busy.append(self._launch(out, "kernel", kernel, LAUNCH, rng.randint(3000, 40000)))
            op, args = OP_NAMES[k % len(OP_NAMES)], _cpu_args(self.correlation)
            out.append(_x("cpu_op", op, HOST, op_begin, self.host_ns - op_begin, args))
        memset = rng.randint(1000, 2000)
        busy.append(self._launch(out, "gpu_memset", "Memset (Device)", MEMSET, memset, SIDE))
        d2h = rng.randint(1500, 3000)
        busy.append(self._launch(out, "gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", MEMCPY, d2h))
        end = max(self.device_free_ns, self.side_free_ns)
        sync_begin = self.host_ns
        self.host_ns = max(self.host_ns, end) + rng.randint(1000, 3000)
        sync = self.host_ns - sync_begin
        out.append(_x("cuda_runtime", "cudaStreamSynchronize", HOST, sync_begin, sync, _runtime(0)))
        model = self.host_ns - model_begin
        out.append(_x("user_annotation", ENGINE_STEP, HOST, model_begin, model, _cpu_args(0)))
        self.host_ns += rng.randint(20_000, 150_000)  # post-processing: the step gap
        if (index + 1) % self.profiler_step_every == 0:
            begin, name = (
                self.profiler_step_begin_ns,
                f"ProfilerStep#{index // self.profiler_step_every}",
            )
            out.append(_x("user_annotation", name, HOST, begin, self.host_ns - begin, _cpu_args(0)))
        self.truth.step_starts_ns.append(busy[0][0])
        self.truth.step_ends_ns.append(end)
        self.truth.busy_union_ns += _union_ns(busy)
        self.truth.events += len(out)
        return out


def _runtime(correlation: int) -> str:
    return f'"External id": {correlation},\n      "cbid": 211, "correlation": {correlation}'


def _cpu_args(external: int) -> str:
    return f'"External id": {external},"Record function id": 0, "Ev Idx": {external}'


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    total, cursor = 0, -1
    for start, end in sorted(intervals):
        if end > cursor:
            total += end - max(start, cursor)
            cursor = end
    return total


def _header() -> str:
    device = {"id": DEVICE, "name": "NVIDIA H100 80GB HBM3", "totalGlobalMem": 85045379072}
    return (
        '{\n  "schemaVersion": 1,\n  "deviceProperties": [\n    '
        + json.dumps(device)
        + '\n  ],\n  "distributedInfo": {"backend": "nccl", "rank": 0, "world_size": 1},\n'
        + f'  "displayTimeUnit": "ms",\n  "baseTimeNanoseconds": {BASE_TIME_NS},\n'
        + '  "traceEvents": [\n'
        + f'  {{\n    "ph": "M", "name": "process_name", "pid": {HOST_PID}, "tid": 0,\n'
        + '    "args": {"name": "python3"}\n  }'
    )


def generate(
    path: Path, events: int, kernels_per_step: int = 50, profiler_step_every: int = 1, seed: int = 0
) -> Truth:
    """Write a trace of about `events` events to `path` (.gz: gzip) and return its truth.

    A `ProfilerStep#N` range spans `profiler_step_every` decode steps (each decode step also
    has its own vLLM-style step range, `ENGINE_STEP`)."""
    loop = DecodeLoop(kernels_per_step, seed, profiler_step_every)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as out:
        out.write(_header())
        index = 0
        while loop.truth.events < events:
            out.write(",\n" + ",\n".join(loop.step(index)))
            index += 1
        out.write('\n  ],\n  "traceName": "synthetic-decode-loop"\n}\n')
    return loop.truth


# -- timing each tool in its own process -------------------------------------------------------
STEPGAP_JOB = """
import sys, time
t0 = time.perf_counter()
from stepgap.analyze import analyze_traces
result = analyze_traces([sys.argv[1]])
s = result.summary
print("RESULT", time.perf_counter() - t0, result.step_rule.value, len(result.steps),
      s["idle_between_steps_us"], s["idle_inside_steps_us"], s["device_idle_total_us"])
"""

HTA_JOB = """
import logging, sys, time
t0 = time.perf_counter()
from hta.trace_analysis import TraceAnalysis
logging.disable(logging.WARNING)
analysis = TraceAnalysis(trace_files={0: sys.argv[1]}, trace_dir=sys.argv[2])
idle, _ = analysis.get_idle_time_breakdown(ranks=[0], visualize=False)
print("RESULT", time.perf_counter() - t0, float(idle.idle_time.sum()))
"""


@dataclass
class Measured:
    tool: str
    wall_s: float
    peak_rss_mib: float
    result: list[str]  # the job's RESULT fields, or ["FAILED", why...]

    @property
    def failed(self) -> bool:
        return bool(self.result) and self.result[0] == "FAILED"


PEAK_OF_CHILD = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def measure(tool: str, argv: list[str]) -> Measured:
    """Run `argv` as a child; its wall time, its own peak RSS and its RESULT line.

    A small launcher process runs the job, so RUSAGE_CHILDREN covers that job alone."""
    begin = time.perf_counter()
    launcher = [sys.executable, "-c", PEAK_OF_CHILD, *argv]
    child = subprocess.run(launcher, capture_output=True, text=True)
    wall = time.perf_counter() - begin
    lines = child.stdout.splitlines()
    peak = next((int(x.split()[1]) / 1024 for x in lines if x.startswith("PEAK_KIB")), 0.0)
    result = [line for line in lines if line.startswith("RESULT")]
    if child.returncode != 0 or not result:
        tail = (child.stderr or child.stdout).strip().splitlines()[-2:]
        return Measured(tool, wall, peak, ["FAILED", f"exit {child.returncode}:", *tail])
    return Measured(tool, wall, peak, result[0].split()[1:])


def _versions(hta_python: str | None) -> str:
    import numpy
    import pandas

    parts = [f"python {platform.python_version()}", f"numpy {numpy.__version__}"]
    parts.append(f"pandas {pandas.__version__}")
    if hta_python:
        probe = (
            "import importlib.metadata as m; print(m.version('traceinsight'), m.version('pandas'))"
        )
        found = subprocess.run([hta_python, "-c", probe], capture_output=True, text=True)
        hta, _, hta_pandas = found.stdout.strip().partition(" ")
        parts.append(f"traceinsight {hta or 'missing'} (with pandas {hta_pandas or '?'})")
    return ", ".join(parts)


def _hta_python(requested: str | None) -> str | None:
    if requested:
        return requested
    found = subprocess.run([sys.executable, "-c", "import hta"], capture_output=True)
    return sys.executable if found.returncode == 0 else None


def _truth_line(truth: Truth) -> str:
    starts, ends = truth.step_starts_ns, truth.step_ends_ns
    gaps_us = sum(s - e for s, e in zip(starts[1:], ends[:-1], strict=True)) / 1e3
    inside_us = (ends[-1] - starts[0]) / 1e3 - gaps_us - truth.busy_union_ns / 1e3
    return f"truth: {len(starts)} steps, gaps {gaps_us:,.3f} us, idle inside {inside_us:,.3f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000, help="events (4M: ~1 GB)")
    parser.add_argument("--kernels-per-step", type=int, default=50)
    parser.add_argument(
        "--profiler-step-every", type=int, default=100, help="decode steps per ProfilerStep"
    )
    parser.add_argument("--gzip", action="store_true", help="write .json.gz instead of .json")
    parser.add_argument("--hta-python", help="an interpreter with traceinsight installed")
    parser.add_argument("--skip-hta", action="store_true")
    parser.add_argument("--workdir", type=Path, help="where the trace goes (default: a tmp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated trace")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stepgap-bench-"))
    trace_dir = workdir / "trace"  # HTA wants a directory of trace files
    trace_dir.mkdir(parents=True, exist_ok=True)
    trace = trace_dir / ("synthetic.json.gz" if args.gzip else "synthetic.json")
    begin = time.perf_counter()
    truth = generate(trace, args.events, args.kernels_per_step, args.profiler_step_every)
    size_mb = trace.stat().st_size / 1e6
    took = time.perf_counter() - begin
    print(f"generated {trace}: {size_mb:,.0f} MB, {truth.events:,} events in {took:.0f} s")
    print(_truth_line(truth), flush=True)

    rows = [measure("stepgap analyze", [sys.executable, "-c", STEPGAP_JOB, str(trace)])]
    hta = None if args.skip_hta else _hta_python(args.hta_python)
    if hta:
        rows.append(
            measure("HTA idle-time breakdown", [hta, "-c", HTA_JOB, str(trace), str(trace_dir)])
        )
    print(f"\nmachine: {host_summary()}")
    print(f"versions: {_versions(hta)}")
    print(
        f"trace: {size_mb:,.0f} MB, {truth.events:,} events, ProfilerStep every "
        f"{args.profiler_step_every} decode steps\n"
    )
    print(f"{'tool':26s} {'wall s':>9s} {'peak RSS MiB':>13s}  result")
    for row in rows:
        print(f"{row.tool:26s} {row.wall_s:9.2f} {row.peak_rss_mib:13,.0f}  {' '.join(row.result)}")
    if len(rows) == 2 and not any(r.failed for r in rows):
        ours, theirs = rows
        print(
            f"\nstepgap vs HTA: {theirs.wall_s / ours.wall_s:.1f}x faster, "
            f"{ours.peak_rss_mib / theirs.peak_rss_mib:.2f} of its peak memory"
        )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
