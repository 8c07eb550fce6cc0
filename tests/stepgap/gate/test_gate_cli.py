"""`stepgap gate` through the CLI: exit 0 pass, 1 a check failed, 2 bad input; report files."""

import json
import xml.etree.ElementTree as ET

import pytest
from gate_plant import REPO, RUN_A, RUN_B, change_token, copy_group, write_rules
from typer.testing import CliRunner

from stepgap.cli import app
from stepgap.gate.facts import FACTS, Fact, FactValue

CI_RULES = REPO / "gates" / "ci.toml"


def gate(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


def test_dogfood_rules_pass_on_a_real_run():
    result = gate(RUN_A, "--rules", CI_RULES)
    assert result.exit_code == 0, result.output
    assert "overlap emits the same tokens as sync" in result.output
    assert "gate PASSED: 2 checks" in result.output
    assert "noise interval" not in result.output  # no baseline: no baseline columns


def test_failed_check_exits_1_and_still_writes_every_report(tmp_path):
    planted = copy_group(RUN_A, tmp_path / "planted")
    change_token(planted / "overlap", request_id=2, position=7)
    junit, summary = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    result = gate(
        planted,
        "--rules",
        CI_RULES,
        "--baseline",
        RUN_B,
        "--junit-xml",
        junit,
        "--markdown",
        summary,
    )
    assert result.exit_code == 1, result.output
    assert "FAIL overlap emits the same tokens as sync: tokens_identical = false" in result.output
    assert "gate FAILED: 1 of 2 checks failed" in result.output
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert summary.read_text().startswith("### stepgap gate: FAILED")


def test_json_output(tmp_path):
    rules = write_rules(tmp_path, "gap_p50_us <= baseline + 5%")
    result = gate(RUN_B, "--baseline", RUN_A, "--rules", rules, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] and data["checks_total"] == 2
    assert data["passed_within_noise"] == ["gap_p50_us <= baseline + 5% [overlap]"]


def test_mode_names_in_titles_survive_the_terminal(tmp_path):
    rules = write_rules(tmp_path, "gap_p50_us <= baseline + 5%")
    result = gate(RUN_B, "--baseline", RUN_A, "--rules", rules)
    assert "[overlap]" in result.output  # not swallowed as console markup
    assert "within run-to-run noise" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-run", "--rules", CI_RULES], "run directory missing-run does not exist"),
        ([RUN_A, "--rules", "absent.toml"], "rules file absent.toml does not exist"),
        ([RUN_A / "sync", "--rules", CI_RULES], "has only sync"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = gate(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_unknown_metric_exits_2_naming_the_valid_ones(tmp_path):
    rules = write_rules(tmp_path, "overlap.gap_median_us <= 3")
    result = gate(RUN_A, "--rules", rules)
    assert result.exit_code == 2
    assert "line 2: unknown metric 'gap_median_us'" in result.output
    assert "valid metrics: " in result.output and "gap_p50_us" in result.output


def test_malformed_rules_exit_2_naming_the_line(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\ncheck = "tokens_identical == true"\n[[rule]]\ncheck = "gap <<= 3"\n'
    )
    result = gate(RUN_A, "--rules", rules)
    assert result.exit_code == 2
    assert "line 4: rule 2: cannot read" in result.output


def test_error_messages_keep_their_brackets(tmp_path):
    rules = write_rules(tmp_path, "tokens_identical == true", extra="[noise]\nlevel = 3\n")
    result = gate(RUN_A, "--rules", rules)
    assert result.exit_code == 2
    assert "line 1: [noise]: unknown key 'level'" in result.output


def test_incomplete_run_is_bad_input(tmp_path):
    group = copy_group(RUN_A, tmp_path / "partial")
    meta_file = group / "overlap" / "run.json"
    meta = json.loads(meta_file.read_text())
    meta.update(complete=False, incomplete_reason="interrupted")
    meta_file.write_text(json.dumps(meta))
    result = gate(group, "--rules", CI_RULES)
    assert result.exit_code == 2 and "incomplete (interrupted)" in result.output


def test_attach_reaches_a_registered_fact(tmp_path, monkeypatch):
    def verdict(inputs):
        return FactValue(json.loads(inputs.attachment("verify", "v").read_text())["passed"], "")

    monkeypatch.setitem(FACTS, "verify.passed", Fact("verify.passed", "verified", verdict))
    rules = write_rules(tmp_path, "verify.passed == true")
    (tmp_path / "v.json").write_text('{"passed": false}')
    result = gate(RUN_A, "--rules", rules, "--attach", f"verify={tmp_path / 'v.json'}")
    assert result.exit_code == 1, result.output
    result = gate(RUN_A, "--rules", rules, "--attach", "verify")
    assert result.exit_code == 2 and "--attach takes NAME=FILE" in result.output
