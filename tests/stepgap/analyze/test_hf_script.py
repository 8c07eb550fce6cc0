"""scripts/make_hf_trace.py on CPU (where transformers is installed): a profiled decode loop
with one ProfilerStep per step, which `stepgap analyze` reads and refuses only for lacking
device activity."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepgap.analyze import TraceError, analyze_traces, read_trace

ROOT = Path(__file__).resolve().parents[3]


def test_cpu_trace_of_the_hf_decode_loop(tmp_path):
    pytest.importorskip("transformers")
    script = ROOT / "scripts" / "make_hf_trace.py"
    env = {**os.environ, "OUT": str(tmp_path)}
    args = [sys.executable, str(script), "--device", "cpu", "--steps", "3", "--warmup", "1"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "hf_llama_decode.trace.json.gz"
    names = set(read_trace(path, 0).ranges.name.astype(str))
    assert {"ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"} <= names
    with pytest.raises(TraceError, match=r"no device activity.*ProfilerStep#N \(3\)"):
        analyze_traces([path])
