"""`stepgap analyze` through the CLI: saved runs that compare reads, JSON, and bad input."""

import gzip
import json
import sqlite3

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.analyze import STEP_COLUMNS
from stepgap.cli import app

from .conftest import DATA, NSYS_FIXTURE, decode_loop


def invoke(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def test_analyze_saves_a_run_that_compare_reads(tmp_path, loop_trace):
    path, _ = loop_trace
    result = invoke(path, "--out", tmp_path / "a", "--mode", "overlap")
    assert result.exit_code == 0, result.output
    assert "gap p50 (µs)" in result.output and "saved:" in result.output
    run = stepgap.load_run(tmp_path / "a")
    assert run.meta["source"] == "trace:chrome" and run.mode == "overlap" and run.complete
    assert list(run.steps.columns) == STEP_COLUMNS and len(run.steps) == 4
    assert run.summary["gap_p50_us"] == 57.0 and len(run.requests) == 0
    assert run.meta["environment"]["device"]["name"] == "GPU-X"
    assert invoke(NSYS_FIXTURE, "--out", tmp_path / "b").exit_code == 0
    compared = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert compared.exit_code == 0, compared.output
    assert "gap p50" in compared.output


def test_json_output(tmp_path, loop_trace):
    path, _ = loop_trace
    result = invoke(path, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["out"] is None and data["summary"]["num_steps"] == 4
    assert data["traces"][0]["format"] == "chrome" and data["groups"][0]["steps"] == 4


def test_several_ranks_line_up_on_one_clock(tmp_path):
    """A directory of rank files, as vLLM's profiler writes them."""
    (tmp_path / "ranks").mkdir()
    for rank, base in enumerate((1_700_000_000_000_000_000, 1_700_000_000_000_050_000)):
        trace = decode_loop(base_ns=base)
        trace.header["distributedInfo"] = {"rank": rank, "world_size": 2}
        trace.write(tmp_path / "ranks" / f"rank{rank}.pt.trace.json.gz")
    (tmp_path / "ranks" / "README.txt").write_text("not a trace")
    result = invoke(tmp_path / "ranks", "--out", tmp_path / "tp2")
    assert result.exit_code == 0, result.output
    steps = stepgap.load_run(tmp_path / "tp2").steps
    rank0, rank1 = steps[steps["rank"] == 0], steps[steps["rank"] == 1]
    assert list(rank1.device_start_us) == [s + 50.0 for s in rank0.device_start_us]
    summary = stepgap.load_run(tmp_path / "tp2").summary
    assert summary["gap_samples"] == 6 and summary["num_groups"] == 2


def _truncated_gzip(tmp_path):
    data = gzip.compress(decode_loop().text().encode())
    (tmp_path / "t.json.gz").write_bytes(data[: len(data) // 2])
    return tmp_path / "t.json.gz"


def _invalid_json(tmp_path):
    (tmp_path / "t.json").write_text('{"traceEvents": [{"ph": "X",, }]}')
    return tmp_path / "t.json"


def _no_device_events(tmp_path):
    trace = decode_loop()
    trace.events = [e for e in trace.events if e.get("cat") in (None, "user_annotation")]
    return trace.write(tmp_path / "cpu.json")


def _not_an_export(tmp_path):
    with sqlite3.connect(tmp_path / "x.sqlite") as db:
        db.execute("CREATE TABLE t (a)")
    return tmp_path / "x.sqlite"


def _not_a_trace(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    return tmp_path / "notes.txt"


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (_truncated_gzip, [], "truncated gzip"),
        (_invalid_json, [], "invalid JSON inside traceEvents"),
        (_no_device_events, [], "no device activity"),
        (
            lambda p: decode_loop().write(p / "t.json"),
            ["--range", "^step$"],
            "execute_context_N(N)",
        ),
        (_not_an_export, [], "not an Nsight Systems export"),
        (_not_a_trace, [], "neither a Chrome trace"),
        (lambda p: p / "missing.json", [], "does not exist"),
        (lambda p: decode_loop().write(p / "t.json"), ["--mode", "fast"], "--mode must be"),
        (lambda p: decode_loop().write(p / "t.json"), ["--range", "("], "bad regex"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, extra, message):
    result = invoke(make(tmp_path), *extra, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_existing_run_is_kept_without_force(tmp_path, loop_trace):
    path, _ = loop_trace
    assert invoke(path, "--out", tmp_path / "a").exit_code == 0
    before = (tmp_path / "a" / "run.json").read_bytes()
    result = invoke(path, "--out", tmp_path / "a")
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "a" / "run.json").read_bytes() == before
    assert invoke(path, "--out", tmp_path / "a", "--force").exit_code == 0


def test_json_carries_the_three_idle_figures_and_the_causes(tmp_path):
    result = invoke(DATA / "vllm_graph_sync.trace.json.gz", "--json", "--no-save")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    summary = data["summary"]
    for key in ("idle_between_steps_us", "idle_inside_steps_us", "device_idle_total_us"):
        assert summary[key] > 0 and summary[key.replace("_us", "_fraction")] is not None
    total = summary["idle_between_steps_us"] + summary["idle_inside_steps_us"]
    assert summary["device_idle_total_us"] == pytest.approx(total)
    assert data["step_rule"] == "vllm"
    assert data["gap_causes"]["by_cause"][0]["share"] == pytest.approx(1.0)
    assert data["traces"][0]["launch_threads"] == [{"pid": 4100, "tid": 1, "device_ops": 504}]


def test_tables_name_the_rule_the_idle_figures_and_the_cause(tmp_path):
    result = invoke(DATA / "sglang_overlap.trace.json.gz", "--no-save")
    assert result.exit_code == 0, result.output
    assert "steps from rule sglang: SGLang step[MODE bs=N]" in result.output
    for label in ("idle between steps", "idle inside steps", "device idle, total", "overlap"):
        assert label in result.output
    assert "why the gaps:" in result.output


def test_error_messages_keep_text_in_square_brackets(tmp_path):
    result = invoke(DATA / "sglang_overlap.trace.json.gz", "--range", "^nothing$", "--no-save")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "step[DECODE bs=N] (9), step[EXTEND bs=N toks=N] (1)" in result.output


def test_a_saved_trace_run_keeps_causes_and_groups(tmp_path):
    assert invoke(DATA / "sglang_overlap.trace.json.gz", "--out", tmp_path / "s").exit_code == 0
    run = stepgap.load_run(tmp_path / "s")
    assert run.meta["config"]["step_rule"] == "sglang" and run.meta["gap_causes"]["headline"]
    assert run.meta["groups"][0]["overlap_us"] > 0
    assert (run.steps.gap_before_us.dropna() >= 0).all()
