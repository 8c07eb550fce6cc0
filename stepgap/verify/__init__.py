"""Verification of the overlap schedule: invariant checks over sync and overlap runs, under
seeded schedule jitter, with planted faults proving the checks can see each bug class."""

from stepgap.verify.cases import FAMILIES, WORKLOADS, Case, VerifyWorkload
from stepgap.verify.checks import CHECKS, Evidence, Finding, ValueAt, run_checks
from stepgap.verify.runner import (
    CaseResult,
    FaultTable,
    Verifier,
    VerifyConfig,
    VerifyResult,
    fault_table,
    verify,
)
from stepgap.verify.trace import RequestTrace, RunTrace, StepTrace, trace_run

__all__ = [
    "CHECKS",
    "FAMILIES",
    "WORKLOADS",
    "Case",
    "CaseResult",
    "Evidence",
    "FaultTable",
    "Finding",
    "RequestTrace",
    "RunTrace",
    "StepTrace",
    "ValueAt",
    "Verifier",
    "VerifyConfig",
    "VerifyResult",
    "VerifyWorkload",
    "fault_table",
    "run_checks",
    "trace_run",
    "verify",
]
