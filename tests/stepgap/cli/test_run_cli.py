"""`stepgap run` and `stepgap workloads` through the CLI: output, saving, bad input."""

import json

import pytest
from typer.testing import CliRunner

import stepgap
from stepgap import runner as runner_module
from stepgap.cli import app

RUN = ["run", "--device", "cpu", "--num-requests", "6"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_json_output_has_both_modes_and_identity(tmp_path):
    result = invoke(*RUN, "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["runs"]) == {"sync", "overlap"} and data["tokens_identical"] is True
    assert data["runs"]["overlap"]["summary"]["total_output_tokens"] > 0  # vLLM's key name
    ratio = data["ratios"]["gap_p50_us"]
    assert ratio["noise"]["low"] <= ratio["ratio"] <= ratio["noise"]["high"]


def test_single_mode_table_and_saved_directory(tmp_path):
    result = invoke(*RUN, "--mode", "sync", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "gap p50" in result.stdout and "cpu-default" in result.stdout
    assert stepgap.load_run(tmp_path / "s").mode == "sync"


def test_existing_output_is_kept_without_force(tmp_path):
    out = tmp_path / "r"
    assert invoke(*RUN, "--mode", "sync", "--out", out).exit_code == 0
    before = (out / "run.json").read_bytes()
    result = invoke(*RUN, "--mode", "sync", "--out", out)
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "run.json").read_bytes() == before
    assert invoke(*RUN, "--mode", "overlap", "--out", out, "--force").exit_code == 0
    assert stepgap.load_run(out).mode == "overlap"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary leftovers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "nope"], "unknown workload"),
        (["--mode", "async"], "unknown mode"),
        (["--device", "tpu"], "unknown device"),
        (["--model-override", "layers=2"], "unknown model override"),
        (["--model-override", "num_layers"], "KEY=VALUE"),
        (["--concurrency", "0"], "concurrency must be >= 1"),
        (["--num-requests", "0"], "num_requests must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = invoke(*RUN, *args, "--out", tmp_path / "x")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_cuda_without_gpu_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = invoke(*RUN, "--device", "cuda", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


def test_workload_toml_file_and_its_errors(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('base = "smoke"\nnum_requests = 4\noutput_len = 6\n')
    result = invoke("run", "--device", "cpu", "--workload", good, "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"]["sync"]["summary"]["total_output_tokens"] == 24
    bad = tmp_path / "bad.toml"
    bad.write_text("num_requests = [\n")
    result = invoke("run", "--workload", bad, "--out", tmp_path / "b")
    assert result.exit_code == 2 and "not valid TOML" in result.output
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('base = "smoke"\nrequests = 3\n')
    result = invoke("run", "--workload", unknown, "--out", tmp_path / "u")
    assert result.exit_code == 2 and "unknown key(s) requests" in result.output


def test_ctrl_c_saves_an_incomplete_run(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = runner_module.StepWindowProfiler.on_step

    def interrupting(self, record):
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real(self, record)

    monkeypatch.setattr(runner_module.StepWindowProfiler, "on_step", interrupting)
    result = invoke(*RUN, "--out", tmp_path / "r")
    assert result.exit_code == 130 and "incomplete" in result.output
    runs = stepgap.load_runs(tmp_path / "r")
    assert [r.mode for r in runs] == ["sync"] and not runs[0].complete
    assert runs[0].meta["incomplete_reason"].startswith("interrupted")
    assert len(runs[0].steps) > 0 and runs[0].steps.device_end_us.notna().all()
    with pytest.raises(stepgap.RunError, match="incomplete"):
        stepgap.load_run(tmp_path / "r" / "sync", require_complete=True)


def test_workloads_lists_presets_with_scaled_labels():
    result = invoke("workloads", "--json")
    data = json.loads(result.stdout)
    assert data["ernie-4.5-21b-a3b-tp4"]["concurrency"] == 64
    assert data["ernie-4.5-21b-a3b-tp4-scaled"]["label"].endswith(
        "(scaled from ernie-4.5-21b-a3b-tp4)"
    )
    table = invoke("workloads")
    assert table.exit_code == 0 and "glm-4.5-air-tp8" in table.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('base = "smoke"\nmodel = "llama-7b"\n', "unknown model preset 'llama-7b'"),
        ('base = "smoke"\ninput_len = 300\nmax_model_len_override = 128\n', "max_model_len"),
        ('base = "smoke"\ntemperature = -1.0\n', "temperature"),
        ('base = "smoke"\ntop_p = 2.0\n', "top_p must be in (0, 1]"),
        ('base = "smoke"\ntop_k = -3\n', "top_k must be >= 0"),
        ('base = "smoke"\narrival = "poisson"\nrate_per_s = 0\n', "rate_per_s > 0"),
        ('base = "smoke"\nnum_requests = "many"\n', "num_requests must be an integer"),
    ],
)
def test_bad_workload_files(tmp_path, toml, message):
    path = tmp_path / "w.toml"
    path.write_text(toml)
    result = invoke("run", "--device", "cpu", "--workload", path, "--out", tmp_path / "x")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert message is None or message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_no_instrument_leaves_timers_out_but_still_verifies_tokens(tmp_path):
    result = invoke(*RUN, "--no-instrument", "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tokens_identical"] is True
    assert data["runs"]["overlap"]["summary"]["gap_p50_us"] is None  # no device timers
    run = stepgap.load_run(tmp_path / "r" / "overlap")
    assert run.steps.device_start_us.isna().all() and len(run.phases) == 0
