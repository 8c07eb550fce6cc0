"""What every command shares: --version, a fast --help, --json wherever results are printed,
and plain-text output of user data."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from stepgap.cli import app

ROOT = Path(__file__).resolve().parents[3]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("stepgap ")


def test_help_takes_under_a_second():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "stepgap", "--help"], env=env, capture_output=True, timeout=60
        )
        times.append(time.perf_counter() - started)
        assert done.returncode == 0
    assert min(times) < 1.0, times


def test_report_and_export_print_json(both_run, tmp_path):
    report = invoke("report", both_run, "-o", tmp_path / "r.html", "--json")
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert data["report"] == str(tmp_path / "r.html") and len(data["runs"]) == 2
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o644
    again = invoke("report", both_run, "-o", tmp_path / "r.html", "--force", "--json")
    assert again.exit_code == 0, again.output
    export = invoke("export", both_run / "sync", "--perfetto", tmp_path / "p.json.gz", "--json")
    assert export.exit_code == 0 and json.loads(export.stdout)["bytes"] > 0


def test_gate_rewrites_its_own_reports_and_writes_them_0644(both_run, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\ncheck = "tokens_identical == true"\n')
    junit, markdown = tmp_path / "junit.xml", tmp_path / "summary.md"
    args = ["gate", both_run, "--rules", rules, "--junit-xml", junit, "--markdown", markdown]
    for _ in range(2):  # the second run replaces the first run's reports
        assert invoke(*args).exit_code == 0
    for path in (junit, markdown):
        assert path.stat().st_mode & 0o777 == 0o644
    markdown.write_text("my own notes\n")
    refused = invoke(*args)
    assert refused.exit_code == 2 and "not a stepgap gate report" in refused.stderr
    assert markdown.read_text() == "my own notes\n"
    assert invoke(*args, "--force").exit_code == 0


def test_run_reports_noise_and_device_threads(tmp_path):
    args = ["run", "--device", "cpu", "--num-requests", "8", "--out", tmp_path / "r"]
    result = invoke(*args, "--goodput", "ttft:1e6", "--goodput", "tpot:1e6", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"]["worker_threads"] == max(1, data["device"]["cores"] - 1)
    overlap = data["runs"]["overlap"]["summary"]
    assert overlap["request_goodput"] == overlap["request_throughput"] > 0
    throughput = data["ratios"]["output_throughput"]
    assert throughput["noise"]["proxy"] and throughput["reading"]
    assert data["workload"]["name"] == "cpu-default" and data["workload"]["arrival"] == "all"
