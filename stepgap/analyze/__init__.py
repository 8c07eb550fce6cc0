"""`stepgap analyze`: step gaps from foreign traces (PyTorch profiler, Nsight Systems).

from stepgap.analyze import analyze_traces, StepOptions
result = analyze_traces(["rank0.json.gz", "rank1.json.gz"])
result.steps     # per rank/device(/stream) and step: device interval, gap, busy, kernels
result.summary   # DESIGN.md's summary (gap p50/p90/p99, idle fraction, ...)
"""

from stepgap.analyze.analysis import TraceAnalysis, analyze_traces, summarize_table
from stepgap.analyze.reader import detect_format, read_trace
from stepgap.analyze.rundir import to_run_data
from stepgap.analyze.steps import DEFAULT_RANGE_PATTERNS, STEP_COLUMNS, StepOptions
from stepgap.analyze.trace import TraceData, TraceError

__all__ = [
    "DEFAULT_RANGE_PATTERNS",
    "STEP_COLUMNS",
    "StepOptions",
    "TraceAnalysis",
    "TraceData",
    "TraceError",
    "analyze_traces",
    "detect_format",
    "read_trace",
    "summarize_table",
    "to_run_data",
]
