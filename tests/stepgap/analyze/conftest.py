"""Small PyTorch-profiler (Kineto) traces built event by event, written in several layouts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "analyze"
NSYS_FIXTURE = DATA / "nsys_two_streams.sqlite"
HF_FIXTURE = DATA / "hf_llama_decode.trace.json.gz"
LAYOUTS = ("kineto", "indent", "spaced", "minified")
FIXTURES = {  # the committed fixtures of tests/data/analyze/make_trace_fixtures.py: step ranges
    "training_two_threads": r"^ProfilerStep#\d+$",
    "sglang_overlap": r"^step\[",
    "epoch_timestamps": r"^ProfilerStep#\d+$",
    "vllm_graph_sync": r"^execute_context_",
}
VLLM_STEP = "execute_context_0(0)_generation_4(4)"  # vLLM's step annotation (rules.py)


class KinetoTrace:
    """A Kineto-shaped trace: host ranges, runtime calls with correlation ids, device ops."""

    def __init__(self, pid: int = 100, tid: int = 100, base_ns: int | None = None) -> None:
        self.pid, self.tid = pid, tid
        self.header: dict = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "GPU-X"}]}
        if base_ns is not None:
            self.header["baseTimeNanoseconds"] = base_ns
        self.events: list[dict] = [
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": "py"}}
        ]
        self.correlation = 0

    def range(self, name: str, ts: float, dur: float, tid: int | None = None, cat=None):
        self.events.append(
            {
                "ph": "X",
                "cat": cat or "user_annotation",
                "name": name,
                "pid": self.pid,
                "tid": self.tid if tid is None else tid,
                "ts": ts,
                "dur": dur,
                "args": {"External id": 1},
            }
        )

    def call(self, name: str, ts: float, dur: float = 2.0, tid: int | None = None) -> int:
        self.correlation += 1
        self.events.append(
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": name,
                "pid": self.pid,
                "tid": self.tid if tid is None else tid,
                "ts": ts,
                "dur": dur,
                "args": {"cbid": 211, "correlation": self.correlation},
            }
        )
        return self.correlation

    def launch(self, at: float, start: float, end: float, kind="kernel", stream=7, tid=None):
        """A runtime call at host time `at` and the device op it launched, [start, end]."""
        api = {"kernel": "cudaLaunchKernel", "gpu_memcpy": "cudaMemcpyAsync"}.get(
            kind, "cudaMemsetAsync"
        )
        correlation = self.call(api, at, tid=tid)
        self.events.append(
            {
                "ph": "X",
                "cat": kind,
                "name": f"{kind}-{correlation}",
                "pid": 0,
                "tid": stream,
                "ts": start,
                "dur": end - start,
                "args": {
                    "External id": correlation,
                    "queued": 0,
                    "device": 0,
                    "context": 1,
                    "stream": stream,
                    "correlation": correlation,
                    "grid": [1, 1, 1],
                },
            }
        )
        self.events.append(
            {
                "ph": "f",
                "id": correlation,
                "pid": 0,
                "tid": stream,
                "ts": start,
                "cat": "ac2g",
                "name": "ac2g",
                "bp": "e",
            }
        )

    def document(self) -> dict:
        return {**self.header, "traceEvents": self.events, "traceName": "test"}

    def text(self, layout: str = "kineto") -> str:
        doc = self.document()
        if layout == "minified":
            return json.dumps(doc, separators=(",", ":"))
        if layout == "spaced":
            return json.dumps(doc)
        if layout == "indent":
            return json.dumps(doc, indent=2)
        # Kineto: header keys, then events at two spaces, each its own pretty block
        head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in self.header.items())
        events = ",\n".join(
            "  " + json.dumps(e, indent=2).replace("\n", "\n  ") for e in self.events
        )
        return f'{{\n{head},\n  "traceEvents": [\n{events}\n  ],\n  "traceName": "test"\n}}\n'

    def write(self, path: Path, layout: str = "kineto") -> Path:
        text = self.text(layout)
        if path.suffix == ".gz":
            with gzip.open(path, "wt") as out:
                out.write(text)
        else:
            path.write_text(text)
        return path


def decode_loop(steps: int = 4, base_ns: int | None = None, period: float = 100.0):
    """`steps` steps: a vLLM step range each, launching an H2D copy, two kernels and a D2H
    copy on stream 7; device start 10 µs into the range, gaps growing by 5 µs."""
    trace = KinetoTrace(base_ns=base_ns)
    for i in range(steps):
        h = 1000.0 + i * period + i * (i + 1) * 2.5
        trace.range(VLLM_STEP, h, 50.0)
        trace.launch(h + 1, h + 10, h + 12, "gpu_memcpy")
        trace.launch(h + 3, h + 14, h + 30)
        trace.launch(h + 5, h + 33, h + 60)
        trace.launch(h + 7, h + 61, h + 63, "gpu_memcpy")
    return trace


@pytest.fixture
def make_trace():
    return KinetoTrace


@pytest.fixture
def loop_trace(tmp_path):
    """A written decode-loop trace (Kineto layout, gzipped) and its builder."""
    trace = decode_loop()
    return trace.write(tmp_path / "loop.json.gz"), trace
