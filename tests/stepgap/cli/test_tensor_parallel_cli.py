"""`stepgap run --tp 2` on CPU (gloo): every rank's table saved and read back, the per-rank
view in run, compare, report and gate, and a failed rank saved incomplete with one line."""

import json
import multiprocessing
import os
import signal

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap import runner as runner_module
from stepgap.cli import app
from stepgap.runner import PartialRun, RunConfig, run_workload
from stepgap.workloads import load_workload

TP_RUN = ["run", "--device", "cpu", "--workload", "smoke", "--tp", "2"]
SMALL = ["--num-requests", "8", "--output-len", "8"]
RANK_RULES = """
[[rule]]
check = "rank1.gap_p50_us <= 1e9"
[[rule]]
check = "overlap.slowest.gap_p99_us <= 1e9"
[[rule]]
check = "overlap/sync slowest.gap_mean_us < 100"
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tp") / "tp2"
    result = invoke(*TP_RUN, *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    assert "per rank" in result.stdout and "slowest rank, per step" in result.stdout
    return out


def test_every_rank_has_its_table_and_summary(tp_run):
    runs = stepgap.load_runs(tp_run)
    assert [r.mode for r in runs] == ["overlap", "sync"]
    for run in runs:
        assert run.meta["config"]["tensor_parallel"] == 2
        assert set(run.rank_steps) == {1} and set(run.rank_phases) == {1}
        assert len(run.rank_steps[1]) == len(run.steps) == run.summary["num_steps"]
        assert run.summary["rank0.gap_p50_us"] == run.summary["gap_p50_us"]
        for key in ("rank1.gap_p50_us", "slowest.gap_p99_us", "slowest.idle_fraction"):
            assert run.summary[key] is not None, key
        assert run.summary["slowest.gap_max_us"] == max(
            run.summary["rank0.gap_max_us"], run.summary["rank1.gap_max_us"]
        )
    assert runs[0].tokens == runs[1].tokens


def test_compare_and_report_show_each_rank(tp_run, tmp_path):
    result = invoke("compare", tp_run)
    assert result.exit_code == 0 and "slowest rank, per step" in result.stdout
    data = json.loads(invoke("compare", tp_run, "--json").stdout)
    assert {"rank0.gap_p50_us", "rank1.gap_p50_us", "slowest.gap_p50_us"} <= set(data["ranks"])
    page = tmp_path / "report.html"
    assert invoke("report", tp_run, "-o", page).exit_code == 0
    html = page.read_text()
    assert 'id="ranks"' in html and "slowest rank, per step" in html


def test_gate_rules_address_a_rank_and_the_slowest(tp_run, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(RANK_RULES)
    result = invoke("gate", tp_run, "--rules", rules)
    assert result.exit_code == 0, result.output
    rules.write_text('[[rule]]\ncheck = "rank5.gap_p50_us <= 1"\n')
    result = invoke("gate", tp_run, "--rules", rules)
    assert result.exit_code != 0 and "unknown metric 'rank5.gap_p50_us'" in result.output


def test_a_killed_rank_ends_the_run_saved_as_incomplete_with_the_reason():
    workload = load_workload("smoke").with_overrides(num_requests=8, output_len=24)
    config = RunConfig(workload, device="cpu", tensor_parallel=2)

    def kill_a_follower(mode, finished, total):
        if mode == "overlap" and finished >= 1:
            for child in multiprocessing.active_children():
                if child.name == "stepgap-rank1" and child.is_alive():
                    os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(PartialRun) as partial:
        run_workload(config, kill_a_follower)
    reason = partial.value.reason
    assert reason.startswith("tensor-parallel rank 1 was killed by SIGKILL") and "\n" not in reason
    sync, overlap = partial.value.runs
    assert sync.complete and sync.rank_steps != {}
    assert not overlap.complete and overlap.meta["incomplete_reason"] == reason
    assert not [c for c in multiprocessing.active_children() if c.name.startswith("stepgap-rank")]


def test_the_cli_says_why_in_one_line_and_saves_what_was_measured(tp_run, tmp_path, monkeypatch):
    measured = stepgap.load_run(tp_run / "sync")
    measured.meta.update(complete=False, incomplete_reason="tensor-parallel rank 1 hung")

    def failing(config, progress=None):
        raise PartialRun([measured], "tensor-parallel rank 1 hung")

    monkeypatch.setattr(runner_module, "run_workload", failing)
    result = invoke(*TP_RUN, "--mode", "sync", "--out", tmp_path / "r")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(error) == 1 and "rank 1 hung" in error[0] and "marked incomplete" in error[0]
    saved = stepgap.load_run(tmp_path / "r")
    assert not saved.complete and saved.rank_steps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tp", "4"], "tensor_parallel 4 does not divide model ernie-4.5-tiny's num_kv_heads"),
        (["--tp", "0"], "tensor_parallel must be in [1, 64]"),
    ],
)
def test_a_tp_the_model_cannot_split_is_a_one_line_error(tmp_path, args, message):
    out = tmp_path / "x"
    result = invoke("run", "--device", "cpu", "--workload", "smoke", *args, "--out", out)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_more_ranks_than_gpus_is_a_one_line_error_before_any_model(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    result = invoke(*TP_RUN[:1], "--device", "cuda", "--workload", "smoke", "--tp", "2",
                    "--out", tmp_path / "x")  # fmt: skip
    assert result.exit_code == 2 and "tensor_parallel 2 needs 2 GPUs; 1 present" in result.output
    assert not (tmp_path / "x").exists()
