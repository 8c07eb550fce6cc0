"""The verdict document: built from results, written atomically, read back by gates."""

import json

import pytest

from reference_engine.faults import Fault
from reference_engine.jitter import JITTER_LEVELS
from stepgap.verify.cases import Case
from stepgap.verify.checks import CHECKS, Finding, ValueAt
from stepgap.verify.runner import CaseResult, FaultTable, VerifyConfig, VerifyResult
from stepgap.verify.verdict import (
    SCHEMA,
    VerdictError,
    build_verdict,
    load_verdict,
    write_verdict,
)

CONFIG = VerifyConfig(families=("ernie-4.5-tiny",), workloads=("burst",), seeds=(0,))
CASE = Case("ernie-4.5-tiny", "burst", 0)
JITTER = JITTER_LEVELS["heavy"].stretched_to(6000.0).with_seed(7)  # a 6 ms step: 4x


def result(config=CONFIG, finding=None, fault=None):
    findings = {name: [] for name in CHECKS}
    if finding is not None:
        findings[finding.check] = [finding]
    case = CaseResult(CASE, fault, findings, 0.1, JITTER)
    return VerifyResult(config, [case], {"kind": "cpu", "name": "cpu"}, 0.1)


LEAK = Finding(
    "no_token_after_stop",
    "overlap",
    3,
    5,
    12,
    ValueAt(None, None, None),
    ValueAt(41, 0.7, 12),
    None,
    "token 41 at position 5 follows stop token 9",
)


def test_clean_verdict():
    verdict = build_verdict(result())
    assert verdict["schema"] == SCHEMA and verdict["passed"] is True
    assert verdict["summary"].startswith("clean engine: 1/1 runs passed all 7 checks")
    assert verdict["first_failure"] is None and verdict["faults"] is None
    assert verdict["config"]["jitter"] == "heavy"


def test_failed_verdict_names_the_case():
    verdict = build_verdict(result(finding=LEAK, fault=Fault.NO_STOP_LAG))
    assert verdict["passed"] is False and verdict["runs_failed"] == 1
    first = verdict["first_failure"]
    assert first["check"] == "no_token_after_stop" and first["step"] == 12
    assert first["overlap"] == {"token": 41, "margin": 0.7, "step": 12}
    assert first["case"] == {
        "family": "ernie-4.5-tiny",
        "workload": "burst",
        "seed": 0,
        "jitter_seed": 7,
        "jitter_max_us": {"host": 32000.0, "device": 20000.0},
        "fault": "no-stop-lag",
    }
    assert verdict["checks"]["no_token_after_stop"]["runs_failed"] == 1
    assert verdict["checks"]["positions"]["passed"] is True


def test_a_blind_verifier_does_not_pass():
    caught = result(finding=LEAK, fault=Fault.NO_STOP_LAG)
    missed = result(fault=Fault.UNDERSIZED_RING)
    table = FaultTable(
        result(), {Fault.NO_STOP_LAG: {"off": caught}, Fault.UNDERSIZED_RING: {"off": missed}}
    )
    verdict = build_verdict(table.clean, table)
    assert verdict["engine_passed"] is True and verdict["passed"] is False
    by_fault = verdict["faults"]["by_fault"]
    assert by_fault["no-stop-lag"]["caught"] and not by_fault["undersized-ring"]["caught"]
    assert by_fault["no-stop-lag"]["jitter"]["off"]["first_checks"] == {"no_token_after_stop": 1}
    assert by_fault["undersized-ring"]["example"] is None


def test_write_and_load(tmp_path):
    path = tmp_path / "deep" / "verdict.json"
    write_verdict(build_verdict(result()), path)
    assert load_verdict(path)["passed"] is True
    with pytest.raises(FileExistsError):
        write_verdict(build_verdict(result()), path)
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else", "passed": True}))
    for bad, message in [(tmp_path / "none.json", "no such"), (other, "not a stepgap-verify")]:
        with pytest.raises(VerdictError, match=message):
            load_verdict(bad)
