"""`stepgap verify` through the CLI: verdicts on the terminal, as JSON and as a file."""

import importlib
import json

from typer.testing import CliRunner

from reference_engine.faults import Fault
from stepgap.cli import app
from stepgap.verify.checks import CHECKS
from stepgap.verify.verdict import SCHEMA, load_verdict

SMALL = ["verify", "--device", "cpu", "--family", "ernie-4.5-tiny", "--seeds", "1"]


def invoke(*args):
    return CliRunner().invoke(app, [*SMALL, *args])


def test_clean_verdict_as_json_and_file(tmp_path):
    out = tmp_path / "verdict.json"
    result = invoke("--workload", "single-slot", "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == load_verdict(out)
    assert printed["schema"] == SCHEMA and printed["passed"] is True
    assert printed["engine_passed"] is True and printed["fault"] is None
    assert list(printed["checks"]) == list(CHECKS)
    assert all(c["passed"] and c["runs"] == 1 for c in printed["checks"].values())
    assert printed["first_failure"] is None and printed["faults"] is None
    assert printed["config"]["jitter"] == "heavy"
    assert printed["environment"]["device"]["kind"] == "cpu"


def test_planted_fault_prints_the_first_bad_position(tmp_path):
    out = tmp_path / "verdict.json"
    result = invoke("--workload", "burst", "--fault", "no-stop-lag", "--out", str(out))
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "first failure: no_token_after_stop — overlap run, request" in text
    assert "diagnosis:" in text and "reproduce: stepgap verify" in text
    assert "--fault no-stop-lag" in text
    assert "verdict: FAILED" in text
    verdict = load_verdict(out)
    assert verdict["passed"] is False and verdict["fault"] == "no-stop-lag"
    first = verdict["first_failure"]
    assert first["check"] == "no_token_after_stop" and first["case"]["fault"] == "no-stop-lag"
    assert first["overlap"]["token"] is not None and first["sync"]["token"] is None


def test_all_faults_table(tmp_path):
    result = invoke("--workload", "single-slot", "--all-faults", "--json")
    verdict = json.loads(result.stdout)
    faults = verdict["faults"]
    assert result.exit_code == (0 if verdict["passed"] else 1)
    assert verdict["engine_passed"] is True
    assert faults["jitter_levels"] == ["off", "heavy"]
    assert len(faults["by_fault"]) == len(Fault)
    lag = faults["by_fault"]["no-stop-lag"]
    assert lag["caught"] and lag["jitter"]["off"] == {
        "runs": 1,
        "caught": 1,
        "first_checks": {"no_token_after_stop": 1},
    }
    assert verdict["passed"] == faults["all_caught"]


def test_bad_input_is_one_line_and_keeps_files(tmp_path):
    existing = tmp_path / "verdict.json"
    existing.write_text("keep me")
    cases = [
        (["--fault", "torn-write"], "unknown fault 'torn-write'"),
        (["--fault", "no-stop-lag", "--all-faults"], "exclude each other"),
        (["--workload", "nope"], "unknown verify workload"),
        (["--jitter", "wild"], "unknown jitter level"),
        (["--out", str(existing)], "exists; pass --force"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert existing.read_text() == "keep me"


def test_ctrl_c_writes_no_verdict(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    command_module = importlib.import_module("stepgap.cli.verify")  # the name is the function
    monkeypatch.setattr(command_module, "run_verify", interrupted)
    out = tmp_path / "verdict.json"
    result = invoke("--out", str(out))
    assert result.exit_code == 130
    assert "interrupted: no verdict written" in result.output
    assert not out.exists()
