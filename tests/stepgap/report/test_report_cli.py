"""`stepgap report`: group or run directories in, one HTML file out; bad input is a
one-line error or a visible warning, never a traceback."""

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.runs import RunData, save_run


def invoke(*args):
    return CliRunner().invoke(app, ["report", *(str(a) for a in args)])


def one_line_error(result, text):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], lines


def saved_variant(run: RunData, path, **meta) -> RunData:
    variant = RunData(
        {**run.meta, **meta},
        run.steps,
        run.requests,
        run.tokens,
        run.margins,
        run.token_times,
        run.phases,
    )
    save_run(variant, path)
    return variant


def test_group_directory_makes_a_report_with_plot_files(both_run, tmp_path):
    out, plots = tmp_path / "out" / "report.html", tmp_path / "plots"
    result = invoke(both_run, "-o", out, "--plots-dir", plots)
    assert result.exit_code == 0, result.output
    assert f"report: {out} (2 runs, 5 figures" in " ".join(result.stdout.split())
    assert result.stderr == ""
    assert len(list(plots.glob("*.png"))) == 5 and len(list(plots.glob("*.svg"))) == 5
    page = out.read_text()
    assert page.index("smoke-sync</b>") < page.index("smoke-overlap</b>")  # sync: baseline


def test_run_directories_in_the_order_given(both_run, tmp_path):
    out = tmp_path / "r.html"
    assert invoke(both_run / "overlap", both_run / "sync", "-o", out).exit_code == 0
    assert "smoke-sync / smoke-overlap" in out.read_text()


def test_missing_run_is_a_one_line_error(tmp_path):
    one_line_error(invoke(tmp_path / "nope", "-o", tmp_path / "r.html"), "does not exist")
    one_line_error(invoke(tmp_path, "-o", tmp_path / "r.html"), "holds no run")
    assert not (tmp_path / "r.html").exists()


def test_unreadable_run_is_a_one_line_error(both_run, tmp_path):
    broken = tmp_path / "broken"
    saved_variant(stepgap.load_run(both_run / "sync"), broken)
    (broken / "steps.csv").write_text("")
    one_line_error(invoke(broken, "-o", tmp_path / "r.html"), "cannot read")


def test_output_inside_a_run_directory_is_refused(both_run):
    one_line_error(invoke(both_run, "-o", both_run / "sync" / "r.html"), "is a run directory")


def test_incomplete_run_and_other_workload_are_warned_about_but_rendered(both_run, tmp_path):
    sync = stepgap.load_run(both_run / "sync")
    saved_variant(sync, tmp_path / "partial", complete=False, incomplete_reason="interrupted")
    other = {**sync.meta["workload"], "label": "other-mix"}
    saved_variant(sync, tmp_path / "other", workload=other)
    out = tmp_path / "r.html"
    result = invoke(both_run / "sync", tmp_path / "partial", tmp_path / "other", "-o", out)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("incomplete (interrupted)" in line for line in warnings)
    assert any("different workloads" in line for line in warnings)
    page = out.read_text()
    assert "incomplete (interrupted)" in page and "different workloads" in page


@pytest.mark.parametrize("args", [[], ["-o"]])
def test_usage_errors_are_not_tracebacks(args):
    result = invoke(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
