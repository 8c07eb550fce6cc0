"""A real CPU run of the default workload, shared by the stepgap tests."""

import pytest
from typer.testing import CliRunner

from stepgap.cli import app


@pytest.fixture(scope="session")
def both_run(tmp_path_factory):
    """`stepgap run --mode both` of a smaller smoke workload, saved; returns its directory."""
    out = tmp_path_factory.mktemp("runs") / "smoke-both"
    result = CliRunner().invoke(
        app, ["run", "--device", "cpu", "--num-requests", "16", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out
