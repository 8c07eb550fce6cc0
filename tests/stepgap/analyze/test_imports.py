"""The commands that never run the engine never import torch (`python -X importtime`), and
`stepgap analyze` of the committed HF trace starts quickly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATA

ROOT = Path(__file__).resolve().parents[3]
TORCH_FREE = ("analyze", "report", "gate", "compare", "export")


def imported(*args: str, cwd: Path = ROOT) -> set[str]:
    """The modules `python -X importtime -m stepgap ARGS` imported (exit status checked)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stepgap", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


@pytest.mark.parametrize("command", TORCH_FREE)
def test_help_imports_no_torch(command):
    modules = imported(command, "--help")
    assert "torch" not in modules and "reference_engine.engine" not in modules


def test_the_command_list_imports_no_command(tmp_path):
    modules = imported("--help")
    assert "torch" not in modules and "pandas" not in modules
    assert not any(m.startswith("stepgap.cli.") for m in modules)


def test_commands_on_a_trace_run_import_no_torch(tmp_path):
    run = tmp_path / "run"
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "gaps"\ncheck = "gap_p50_us < 1000000"\n')
    commands = [
        ("analyze", str(DATA / "vllm_graph_sync.trace.json.gz"), "--out", str(run)),
        ("compare", str(run), str(run)),
        ("report", str(run), "-o", str(tmp_path / "r.html")),
        ("export", str(run), "--perfetto", str(tmp_path / "p.json")),
        ("gate", str(run), "--rules", str(rules)),
    ]
    for command in commands:
        assert "torch" not in imported(*command, cwd=tmp_path), command[0]
