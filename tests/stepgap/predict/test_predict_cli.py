"""`stepgap predict` end to end on a tiny real CPU run, `--against`, the gate's facts, the
report's section, and every bad input as one line with a non-zero exit."""

import csv
import json
import shutil

import pytest
from typer.testing import CliRunner

from stepgap.cli import app
from stepgap.predict.validate import VALIDATED_KEYS

runner = CliRunner()


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_predict_a_sync_run_against_its_overlap_run(tiny_group):
    result = predict(
        tiny_group / "sync",
        "--against",
        tiny_group / "overlap",
        "--floor-from",
        tiny_group / "overlap",
    )
    assert result.exit_code == 0, result.output
    assert "overlap (predicted)" in result.output
    assert "predicted vs measured" in result.output
    assert "the median decode gap of" in result.output


def test_json_holds_the_prediction_and_its_errors(tiny_group):
    result = predict(tiny_group, "--against", tiny_group / "overlap", "--floor-us", "120", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["floor_us"] == 120 and data["floor_source"] == "given"
    sync = json.loads((tiny_group / "sync" / "run.json").read_text())["summary"]
    assert data["sync"]["output_throughput"] == pytest.approx(sync["output_throughput"])
    predicted = data["predicted_overlap"]
    assert predicted["gap_p50_us"] == pytest.approx(120)  # a device-bound run: the floor
    assert predicted["num_steps"] >= sync["num_steps"]
    # the self-check: the sync replay gives back the measured sync run
    replayed = data["sync_replay"]["output_throughput"]
    assert replayed == pytest.approx(sync["output_throughput"], rel=0.02)
    assert [row["key"] for row in data["errors"]] == list(VALIDATED_KEYS)
    overlap = json.loads((tiny_group / "overlap" / "run.json").read_text())["summary"]
    throughput = next(r for r in data["errors"] if r["key"] == "output_throughput")
    assert throughput["measured"] == pytest.approx(overlap["output_throughput"])
    ratio = throughput["predicted"] / throughput["measured"]
    assert throughput["relative_error"] == pytest.approx(ratio - 1)


def test_the_gap_free_bound_is_the_steps_back_to_back(tiny_group):
    """The bound runs the sync run's measured steps with no gap: no faster than their busy
    time summed from steps.csv (plain csv), never slower than the overlap prediction."""
    result = predict(tiny_group / "sync", "--floor-us", "120", "--json")
    data = json.loads(result.output)
    bound, predicted = data["gap_free_bound"], data["predicted_overlap"]
    with open(tiny_group / "sync" / "steps.csv") as steps:
        busy_s = sum(float(row["busy_us"]) for row in csv.DictReader(steps)) / 1e6
    assert bound["gap_p50_us"] == 0 and bound["num_steps"] == data["sync"]["num_steps"]
    assert busy_s <= bound["duration"] <= predicted["duration"]
    assert bound["output_throughput"] >= predicted["output_throughput"]
    assert "bound (no gaps)" in predict(tiny_group / "sync").output


@pytest.fixture
def broken(tiny_group, tmp_path):
    """A copy of the tiny sync run to break."""
    path = tmp_path / "sync"
    shutil.copytree(tiny_group / "sync", path)
    return path


def test_an_overlap_run_is_refused(tiny_group):
    one_line_error(predict(tiny_group / "overlap"), "is an overlap run", "sync run")


def test_an_incomplete_run_is_refused(broken):
    meta = json.loads((broken / "run.json").read_text())
    meta.update(complete=False, incomplete_reason="interrupted (Ctrl-C)")
    (broken / "run.json").write_text(json.dumps(meta))
    one_line_error(predict(broken), "is incomplete (interrupted (Ctrl-C))")


def test_a_run_without_phases_is_refused(broken):
    (broken / "phases.csv").unlink()
    one_line_error(predict(broken), "no host phases", "phases.csv missing")


def test_a_run_with_empty_phases_is_refused(broken):
    (broken / "phases.csv").write_text("step,phase,start_us,end_us\n")
    one_line_error(predict(broken), "no host phases", "phases.csv empty")


def test_bad_options_are_refused(tiny_group, tmp_path):
    sync = tiny_group / "sync"
    one_line_error(
        predict(sync, "--floor-us", "1", "--floor-from", tiny_group / "overlap"),
        "--floor-us or --floor-from",
    )
    one_line_error(predict(sync, "--floor-us", "-1"), "floor")
    one_line_error(predict(sync, "--floor-from", sync), "--floor-from takes an overlap run")
    one_line_error(predict(sync, "--against", sync), "--against takes an overlap run")
    one_line_error(predict(tmp_path / "nothing"), "does not exist")


def test_gate_facts_bound_the_prediction_error(tiny_group, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\ncheck = "predict.throughput_error < 10"\n'
        '[[rule]]\ncheck = "predict.tpot_p50_error >= 0"\n'
        '[[rule]]\ncheck = "predict.throughput_error < 0"\n'
    )
    result = runner.invoke(app, ["gate", str(tiny_group), "--rules", str(rules), "--json"])
    assert result.exit_code == 1, result.output  # the third rule cannot hold
    checks = json.loads(result.output)["checks"]
    assert [c["passed"] for c in checks] == [True, True, False]
    assert "predicted" in checks[0]["detail"] and "measured" in checks[0]["detail"]
    # the same figure as `predict --against`, the floor taken from the overlap run
    cli = predict(
        tiny_group,
        "--against",
        tiny_group / "overlap",
        "--floor-from",
        tiny_group / "overlap",
        "--json",
    )
    errors = {row["key"]: row["relative_error"] for row in json.loads(cli.output)["errors"]}
    assert checks[0]["value"] == pytest.approx(abs(errors["output_throughput"]))
    assert checks[1]["value"] == pytest.approx(abs(errors["median_tpot_ms"]))
    single = runner.invoke(app, ["gate", str(tiny_group / "sync"), "--rules", str(rules)])
    assert single.exit_code == 2 and "has sync" in single.output


def test_the_report_has_a_predicted_vs_measured_section(tiny_group, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(tiny_group), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Predicted vs measured" in page and "overlap predicted" in page
    alone = tmp_path / "alone.html"
    runner.invoke(app, ["report", str(tiny_group / "sync"), "-o", str(alone)])
    assert "Predicted vs measured" not in alone.read_text()
