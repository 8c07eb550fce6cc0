"""A real CPU run of the default workload, shared by the stepgap tests."""

import json

import pytest
from typer.testing import CliRunner

from stepgap.cli import app


@pytest.fixture(scope="session")
def both_run(tmp_path_factory):
    """`stepgap run --mode both` of a smaller smoke workload, saved; returns its directory.
    (The smoke preset is named: the default workload is longer.)"""
    out = tmp_path_factory.mktemp("runs") / "smoke-both"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--device",
            "cpu",
            "--workload",
            "smoke",
            "--num-requests",
            "16",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


TINY_VERIFY = [
    *("verify", "--device", "cpu", "--family", "ernie-4.5-tiny"),
    *("--workload", "single-slot", "--seeds", "1"),
]


@pytest.fixture(scope="session")
def verdict_file(tmp_path_factory):
    """Factory of real `stepgap verify` verdicts of a tiny configuration, each made once:
    `verdict_file(*extra_options, exit_code=0)` returns the verdict's path. `exit_code=None`:
    the exit code must match the verdict (0 passed, 1 failed), whichever it is."""
    made = {}

    def make(*extra, exit_code):
        if extra not in made:
            path = tmp_path_factory.mktemp("verify") / "verdict.json"
            result = CliRunner().invoke(app, [*TINY_VERIFY, *extra, "--out", str(path)])
            passed = path.exists() and json.loads(path.read_text())["passed"]
            expected = (0 if passed else 1) if exit_code is None else exit_code
            assert result.exit_code == expected, result.output
            made[extra] = path
        return made[extra]

    return make
