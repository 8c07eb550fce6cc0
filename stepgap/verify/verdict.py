"""The verdict of `stepgap verify`: one JSON document, for terminals (`--json`), files
(`--out`) and gates (`verify.passed == true`).

Schema `stepgap-verify/1`:

    {
      "schema": "stepgap-verify/1",
      "passed": true,           # every check held in every run of the engine under test
                                #   and, with --all-faults, every planted fault was caught
      "summary": "one line",
      "engine_passed": true,    # the first half of `passed` alone
      "fault": null,            # the fault planted in the engine under test (--fault), if any
      "runs": 32, "runs_failed": 0, "wall_s": 21.5,
      "config": {"families": [...], "workloads": [...], "seeds": [...], "jitter": "heavy",
                 "jitter_params": {...} | null, "device": "auto", "cuda_graphs": true,
                 "margin_tolerance": 0.0},
      "environment": {"device": {...}, "torch": ..., "git_revision": ..., "command": ...},
      "checks": {NAME: {"description": str, "passed": bool, "runs": int, "runs_failed": int,
                        "first": FINDING | null}},       # NAME in stepgap.verify.CHECKS order
      "first_failure": FINDING | null,                   # the first failing run's first finding
      "faults": null | {                                 # --all-faults: the self-test table
        "all_caught": bool,
        "jitter_levels": ["off", "heavy"],
        "by_fault": {FAULT: {"race": bool, "change": str, "caught": bool,
                             "jitter": {LEVEL: {"runs": int, "caught": int,
                                                "first_checks": {NAME: int}}},
                             "example": FINDING | null}}}
    }

FINDING = {"check", "mode" ("sync", "overlap" or "sync vs overlap"), "request_id",
"position", "step", "sync": VALUE | null, "overlap": VALUE | null, "reference_token",
"diagnosis", "case": {"family", "workload", "seed", "jitter_seed", "jitter_max_us", "fault"}}
with VALUE = {"token", "margin", "step"}. "jitter_max_us" = {"host", "device"}: the level's
pause and stall maxima as the run applied them, stretched to the device's step (null: off).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reference_engine.faults import FAULT_INFO
from stepgap.atomic import write_file
from stepgap.verify.checks import CHECKS, Finding, describe_checks

if TYPE_CHECKING:
    from stepgap.verify.runner import CaseResult, FaultTable, VerifyResult

SCHEMA = "stepgap-verify/1"


class VerdictError(ValueError):
    """A verdict file is missing, unreadable or not a stepgap-verify verdict."""


def finding_dict(result: CaseResult, finding: Finding) -> dict[str, Any]:
    """A finding with the case it came from, as the verdict stores it."""
    jitter = result.jitter
    case = dataclasses.asdict(result.case) | {
        "jitter_seed": result.jitter_seed,
        "jitter_max_us": {"host": jitter.host_max_us, "device": jitter.device_max_us}
        if jitter
        else None,
        "fault": str(result.fault) if result.fault else None,
    }
    return finding.to_dict() | {"case": case}


def _first(results: list[CaseResult], check: str | None = None) -> dict[str, Any] | None:
    for result in results:
        candidates = result.findings.get(check, []) if check else [result.first]
        findings = [finding for finding in candidates if finding is not None]
        if findings:
            chosen = min(findings, key=Finding.sort_key)
            return finding_dict(result, chosen)
    return None


def checks_dict(result: VerifyResult) -> dict[str, Any]:
    descriptions = describe_checks()
    out = {}
    for name in CHECKS:
        failing = result.failures(name)
        out[name] = {
            "description": descriptions[name],
            "passed": not failing,
            "runs": len(result.cases),
            "runs_failed": len(failing),
            "first": _first(failing, name),
        }
    return out


def config_dict(result: VerifyResult) -> dict[str, Any]:
    config = result.config
    return {
        "families": list(config.families),
        "workloads": list(config.workloads),
        "seeds": list(config.seeds),
        "jitter": config.jitter_label,
        "jitter_params": dataclasses.asdict(config.jitter) if config.jitter else None,
        "device": config.device,
        "cuda_graphs": config.cuda_graphs,
        "margin_tolerance": config.margin_tolerance,
    }


def fault_table_dict(table: FaultTable) -> dict[str, Any]:
    levels = list(next(iter(table.rows.values()))) if table.rows else []
    by_fault = {}
    for fault, by_level in table.rows.items():
        caught_results = [c for r in by_level.values() for c in r.cases if not c.passed]
        by_fault[str(fault)] = {
            "race": FAULT_INFO[fault].race,
            "change": FAULT_INFO[fault].change,
            "caught": table.caught(fault),
            "jitter": {
                level: {
                    "runs": len(r.cases),
                    "caught": sum(not c.passed for c in r.cases),
                    "first_checks": dict(r.first_checks().most_common()),
                }
                for level, r in by_level.items()
            },
            "example": _first(caught_results),
        }
    return {"all_caught": table.all_caught, "jitter_levels": levels, "by_fault": by_fault}


def summary_line(result: VerifyResult, table: FaultTable | None = None) -> str:
    config = result.config
    runs = len(result.cases)
    failed = sum(not c.passed for c in result.cases)
    engine = f"engine with fault {config.fault}" if config.fault else "clean engine"
    text = f"{engine}: {runs - failed}/{runs} runs passed all {len(CHECKS)} checks"
    text += f" (jitter {config.jitter_label})"
    if table is not None:
        caught = sum(table.caught(fault) for fault in table.rows)
        text += f"; planted faults caught: {caught}/{len(table.rows)}"
    return text


def build_verdict(
    result: VerifyResult, table: FaultTable | None = None, environment: dict | None = None
) -> dict[str, Any]:
    """The verdict document of one `stepgap verify` invocation (schema in the module doc)."""
    engine_passed = result.passed
    passed = engine_passed and (table is None or table.all_caught)
    return {
        "schema": SCHEMA,
        "passed": passed,
        "summary": summary_line(result, table),
        "engine_passed": engine_passed,
        "fault": str(result.config.fault) if result.config.fault else None,
        "runs": len(result.cases),
        "runs_failed": sum(not c.passed for c in result.cases),
        "wall_s": round(table.wall_s if table else result.wall_s, 3),
        "config": config_dict(result),
        "environment": environment or {},
        "checks": checks_dict(result),
        "first_failure": _first(result.cases),
        "faults": fault_table_dict(table) if table is not None else None,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def dumps(verdict: dict[str, Any]) -> str:
    return json.dumps(_jsonable(verdict), indent=2) + "\n"


def write_verdict(verdict: dict[str, Any], path: Path, force: bool = False) -> None:
    """Write atomically (temporary file, then rename, 0644); an existing file needs `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    write_file(path, dumps(verdict))


def load_verdict(path: Path) -> dict[str, Any]:
    """Read a verdict file; raises VerdictError unless it is a stepgap-verify/1 verdict."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VerdictError(f"{path}: no such verdict file") from None
    except (OSError, json.JSONDecodeError) as error:
        raise VerdictError(f"{path}: not a readable JSON verdict ({error})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise VerdictError(f"{path}: not a {SCHEMA} verdict")
    if not isinstance(data.get("passed"), bool):
        raise VerdictError(f"{path}: verdict has no boolean 'passed'")
    return data
