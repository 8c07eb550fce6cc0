"""The documented gate examples work: README rules, the GitHub Actions workflow's rules."""

import re
import textwrap

import pytest
from gate_plant import REPO, RUN_A, RUN_B

from stepgap.gate.evaluate import evaluate
from stepgap.gate.inputs import load_inputs
from stepgap.gate.rules import parse_rules

WORKFLOW = REPO / "docs" / "github-actions-gate.yml"


def readme_rules() -> str:
    section = (REPO / "README.md").read_text().split("### The rules file", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def workflow_rules(steps: list[dict]) -> str:
    (script,) = [s["run"] for s in steps if "gpu-gates.toml\" <<'EOF'" in s.get("run", "")]
    return textwrap.dedent(script.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0])


def test_readme_rules_example_parses_and_evaluates():
    rules = parse_rules(readme_rules(), "README.md")
    assert {r.kind for r in rules.rules} == {"fact", "bound", "ratio", "regression"}
    report = evaluate(rules, load_inputs(RUN_B, RUN_A))  # every name exists in a real run
    assert len(report.checks) == 7  # two plain-metric rules apply to both modes


def test_workflow_runs_both_modes_gates_and_publishes():
    yaml = pytest.importorskip("yaml")
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]["steps"]
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "stepgap run --mode both --device cuda" in scripts
    (gate,) = [s["run"] for s in steps if s.get("run", "").startswith("stepgap gate")]
    for option in ("--baseline", "--rules", "--junit-xml", "--markdown"):
        assert option in gate
    assert 'stepgap report "$RUN_DIR" -o report.html' in scripts
    assert '>> "$GITHUB_STEP_SUMMARY"' in scripts
    publishing = [s for s in steps if s.get("if") == "always()"]
    assert len(publishing) == 3
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in publishing)
    rules = parse_rules(workflow_rules(steps), "workflow")
    evaluate(rules, load_inputs(RUN_B, RUN_A))  # no unknown metric, mode or fact
