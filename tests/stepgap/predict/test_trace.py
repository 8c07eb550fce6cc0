"""Foreign traces: the bound (every gap removed) and the replay of a sync trace, by hand and
through `stepgap analyze` + `stepgap predict`; and predict stays torch-free."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from stepgap.cli import app
from stepgap.predict.floor import Floor, FloorSource
from stepgap.predict.trace import predict_trace
from stepgap.runs import RunData

ROOT = Path(__file__).resolve().parents[3]
TRACE = ROOT / "tests" / "data" / "analyze" / "vllm_graph_sync.trace.json.gz"


def trace_run(mode):
    """Three steps of 1000 µs; gaps 200 (host shorter than the step) and 1500 (longer)."""
    steps = pd.DataFrame(
        {
            "step": [0, 1, 2],
            "rank": [0, 0, 0],
            "device": [0, 0, 0],
            "device_start_us": [0.0, 1200.0, 3700.0],
            "device_end_us": [1000.0, 2200.0, 4700.0],
            "gap_before_us": [math.nan, 200.0, 1500.0],
        }
    )
    meta = {"mode": mode, "complete": True, "source": "trace:chrome", "summary": {}}
    return RunData(meta, steps, pd.DataFrame())


def test_the_bound_removes_every_gap():
    (group,) = predict_trace(trace_run("unknown"), Floor(0.0, FloorSource.GIVEN)).groups
    assert group.span_us == 4700 and group.gap_total_us == 1700
    assert group.bound_span_us == 3000
    assert group.bound_speedup == 4700 / 3000
    assert group.replay_span_us is None  # not a sync trace: no replay


def test_the_replay_keeps_the_host_bound_part_of_a_gap():
    # overlap hides the 200 µs gap behind step 0, and 1000 of the 1500 behind step 1
    (group,) = predict_trace(trace_run("sync"), Floor(0.0, FloorSource.GIVEN)).groups
    assert group.replay_span_us == 3000 + 500
    assert group.replay_gap_p50_us == 250  # median of 0 and 500


def test_predict_on_an_analyzed_sync_trace(tmp_path):
    run = tmp_path / "vllm"
    runner = CliRunner()
    analyzed = runner.invoke(app, ["analyze", str(TRACE), "--mode", "sync", "--out", str(run)])
    assert analyzed.exit_code == 0, analyzed.output
    result = runner.invoke(app, ["predict", str(run), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    summary = json.loads((run / "run.json").read_text())["summary"]
    (group,) = data["groups"]
    assert group["gap_total_us"] == summary["gap_total_us"]
    assert group["bound_span_us"] == summary["device_span_us"] - summary["gap_total_us"]
    assert group["bound_span_us"] <= group["replay_span_us"] <= group["span_us"]
    assert "per-step host phases" in data["missing"]
    table = runner.invoke(app, ["predict", str(run)])
    assert "speed-up" in table.output and "a trace lacks" in table.output


def test_predict_imports_no_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stepgap", "predict", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "torch" not in modules and "reference_engine.engine" not in modules
