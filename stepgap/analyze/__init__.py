"""`stepgap analyze`: step gaps from foreign traces (PyTorch profiler, Nsight Systems).

from stepgap.analyze import analyze_traces, StepOptions
result = analyze_traces(["rank0.json.gz", "rank1.json.gz"])
result.steps     # per rank/device(/stream) and step: device interval, gap, overlap, idle
result.summary   # DESIGN.md's summary plus the three idle figures
result.causes    # why the gaps happened: the host's waits and ranges
"""

from stepgap.analyze.analysis import TraceAnalysis, analyze_traces
from stepgap.analyze.options import StepOptions, StreamMode
from stepgap.analyze.reader import detect_format, read_trace
from stepgap.analyze.rules import KNOWN_RULES, StepRule
from stepgap.analyze.rundir import to_run_data
from stepgap.analyze.summary import summarize_table
from stepgap.analyze.table import STEP_COLUMNS
from stepgap.analyze.trace import TraceData, TraceError

__all__ = [
    "KNOWN_RULES",
    "STEP_COLUMNS",
    "StepOptions",
    "StepRule",
    "StreamMode",
    "TraceAnalysis",
    "TraceData",
    "TraceError",
    "analyze_traces",
    "detect_format",
    "read_trace",
    "summarize_table",
    "to_run_data",
]
