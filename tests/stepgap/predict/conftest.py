"""A tiny real CPU run of both schedules, shared by the predict tests."""

import pytest
from typer.testing import CliRunner

from stepgap.cli import app

TINY = ["--workload", "smoke", "--num-requests", "8", "--output-len", "8", "--device", "cpu"]


@pytest.fixture(scope="session")
def tiny_group(tmp_path_factory):
    """`stepgap run --mode both` of 8 requests x 8 tokens; returns the group directory."""
    out = tmp_path_factory.mktemp("predict") / "tiny"
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
