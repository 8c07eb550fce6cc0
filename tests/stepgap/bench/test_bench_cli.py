"""`stepgap bench` and `stepgap serve` on the command line: listed, torch-free to start,
one-line errors for bad input. (Running them end to end: tests/stepgap/serve.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepgap.cli import app

ROOT = Path(__file__).resolve().parents[3]


def imported(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stepgap", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return done.stdout, {line.rsplit("|", 1)[1].strip() for line in lines}


def test_both_commands_are_listed():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "bench" in result.output and "serve" in result.output


@pytest.mark.parametrize("command", ["bench", "serve"])
def test_help_imports_no_torch(command):
    text, modules = imported(command, "--help")
    assert "torch" not in modules and "reference_engine.engine" not in modules
    assert "--fault" not in text  # the testing option stays hidden


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--base-url", "localhost:8000"], "base URL must be http(s)://host[:port]"),
        (["bench", "--base-url", "http://h:1", "--api", "tgi"], "unknown api 'tgi'"),
        (["bench", "--base-url", "http://h:1", "--workload", "nope"], "unknown workload 'nope'"),
        (["bench", "--base-url", "http://127.0.0.1:9", "--out", "{tmp}/r"], "cannot read"),
        (["serve", "--mode", "fast"], "unknown mode 'fast'"),
        (["serve", "--fault", "no-stop-lag"], "planted faults live in the overlap loop"),
        (["serve", "--model", "gpt-9"], "unknown model preset 'gpt-9'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
