"""`verify.passed`: a gate rule on the verdict of a real `stepgap verify` run (CPU, one
family, one workload, one seed), given as `--verify FILE` or `--attach verify=FILE`."""

import json
import re

import pytest
from gate_plant import REPO, RUN_A, write_rules
from typer.testing import CliRunner

from stepgap.cli import app
from stepgap.gate.evaluate import evaluate
from stepgap.gate.facts import FACTS
from stepgap.gate.inputs import load_inputs
from stepgap.gate.rules import parse_rules


def gate(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


@pytest.fixture(scope="module")
def clean_verdict(verdict_file):
    """The verdict of the clean engine: passed."""
    return verdict_file(exit_code=0)


@pytest.fixture(scope="module")
def fault_verdict(verdict_file):
    """The verdict of an engine with a planted fault (the discarded lagged token leaks)."""
    return verdict_file("--fault", "no-stop-lag", exit_code=1)


@pytest.fixture
def rules(tmp_path):
    return write_rules(tmp_path, "verify.passed == true", "tokens_identical == true")


def test_verify_passed_is_a_registered_fact():
    assert "verify.passed" in FACTS


def test_a_passing_verdict_passes_the_gate(clean_verdict, rules):
    result = gate(RUN_A, "--rules", rules, "--verify", clean_verdict, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["checks_total"] == 2
    (check,) = [c for c in report["checks"] if c["subject"] == "verify.passed"]
    assert check["kind"] == "fact" and check["value"] is True and check["status"] == "PASS"
    verdict = json.loads(clean_verdict.read_text())
    assert check["detail"].startswith(f"verify.passed = true: {verdict['summary']}")
    assert "clean engine: 1/1 runs passed all 7 checks" in check["detail"]


def test_attach_is_the_same_as_verify(clean_verdict, rules):
    result = gate(RUN_A, "--rules", rules, "--attach", f"verify={clean_verdict}")
    assert result.exit_code == 0, result.output
    assert "gate PASSED: 2 checks" in result.output


def test_a_failed_verdict_fails_the_gate_and_says_where(fault_verdict, rules, tmp_path):
    junit = tmp_path / "gate.xml"
    result = gate(RUN_A, "--rules", rules, "--verify", fault_verdict, "--junit-xml", junit)
    assert result.exit_code == 1, result.output
    first = json.loads(fault_verdict.read_text())["first_failure"]
    where = f"request {first['request_id']}, position {first['position']}, step {first['step']}"
    text = " ".join(result.output.split())
    assert (
        "FAIL verify.passed == true: verify.passed = false: engine with fault no-stop-lag" in text
    )
    assert f"first failure: {first['check']} at {first['mode']} run, {where}" in text
    assert "gate FAILED: 1 of 2 checks failed" in text
    assert 'failures="1"' in junit.read_text()


def test_a_flipped_verdict_fails_the_gate(clean_verdict, rules, tmp_path):
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps({**json.loads(clean_verdict.read_text()), "passed": False}))
    result = gate(RUN_A, "--rules", rules, "--verify", flipped)
    assert result.exit_code == 1, result.output
    assert "FAIL verify.passed == true: verify.passed = false" in result.output


def test_verdict_of_another_git_revision_is_noted(clean_verdict, tmp_path):
    verdict = json.loads(clean_verdict.read_text())
    verdict["environment"]["git_revision"] = "0123456789ab"
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(verdict))
    inputs = load_inputs(RUN_A, attachments={"verify": stale})
    run_revision = inputs.runs["sync"].meta["environment"]["git_revision"]
    (check,) = evaluate(parse_rules('[[rule]]\ncheck = "verify.passed == true"\n'), inputs).checks
    assert check.passed
    assert f"(verdict of git revision 0123456789ab, the run's is {run_revision})" in check.detail


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "verify.passed: attached verify file {path} does not exist"),
        ("{not json", "verify.passed: {path}: not a readable JSON verdict"),
        ('{"schema": "other/1", "passed": true}', "{path}: not a stepgap-verify/1 verdict"),
        ('{"schema": "stepgap-verify/1", "passed": "yes"}', "verdict has no boolean 'passed'"),
    ],
)
def test_bad_verdict_file_exits_2_with_one_line(rules, tmp_path, content, message):
    path = tmp_path / "verdict.json"
    if content is not None:
        path.write_text(content)
    result = gate(RUN_A, "--rules", rules, "--verify", path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {rules} line 2: "), lines
    assert message.format(path=path) in " ".join(result.stderr.split())


def test_rule_without_a_verdict_file_exits_2(rules, clean_verdict):
    result = gate(RUN_A, "--rules", rules)
    assert result.exit_code == 2
    assert "pass --verify FILE (or --attach verify=FILE)" in " ".join(result.output.split())
    both = gate(RUN_A, "--rules", rules, "--verify", clean_verdict, "--attach", "verify=x.json")
    assert both.exit_code == 2
    assert "--verify and --attach verify=FILE name the same file" in both.output


def test_readme_verify_gate_example(clean_verdict, fault_verdict):
    section = (REPO / "README.md").read_text().split("## Verifying overlap correctness", 1)[1]
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    rules = parse_rules(toml, "README.md")
    for verdict, passed in ((clean_verdict, True), (fault_verdict, False)):
        report = evaluate(rules, load_inputs(RUN_A, attachments={"verify": verdict}))
        assert [c.subject for c in report.checks] == ["verify.passed"]
        assert report.passed is passed
