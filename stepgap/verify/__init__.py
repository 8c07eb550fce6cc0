"""Verification of the overlap schedule: invariant checks over sync and overlap runs, under
seeded schedule jitter, with planted faults proving the checks can see each bug class."""

from typing import TYPE_CHECKING, Any

from stepgap.verify.cases import FAMILIES, WORKLOADS, Case, VerifyWorkload
from stepgap.verify.checks import CHECKS, Evidence, Finding, ValueAt, run_checks

if TYPE_CHECKING:
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

# The engine-running half loads on first use: reading a verdict (report, gate) never
# imports the engine (torch).
_LAZY = {
    **dict.fromkeys(
        ("CaseResult", "FaultTable", "Verifier", "VerifyConfig", "VerifyResult"),
        "stepgap.verify.runner",
    ),
    **dict.fromkeys(("fault_table", "verify"), "stepgap.verify.runner"),
    **dict.fromkeys(("RequestTrace", "RunTrace", "StepTrace", "trace_run"), "stepgap.verify.trace"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'stepgap.verify' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


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
