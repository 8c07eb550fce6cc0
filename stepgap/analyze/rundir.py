"""A trace analysis as a run directory, so `compare`, `report` and `gate` read it like a run."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import pandas as pd

from stepgap import environment
from stepgap.analyze.analysis import TraceAnalysis
from stepgap.analyze.summary import REQUEST_COLUMNS
from stepgap.runs import RunData


def to_run_data(analysis: TraceAnalysis, name: str, mode: str = "unknown") -> RunData:
    """The analysis as `RunData`: steps.csv is the per-step table, requests.csv and
    tokens.jsonl are empty (a trace holds no requests), `meta["source"]` is
    `trace:<format>`; the gap causes and per-group idle figures are in run.json."""
    meta = {
        "name": name,
        "mode": mode,
        "source": f"trace:{analysis.format}",
        "complete": True,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": _environment(analysis),
        "config": {
            "analyze": asdict(analysis.options),
            "step_rule": analysis.step_rule.value,
            "step_source": analysis.step_source,
            "warmup_steps": analysis.warmup_steps,
        },
        "workload": {"name": name, "label": name, "source": "trace"},
        "summary": analysis.summary,
        "host_waits": {},
        "traces": analysis.traces,
        "groups": analysis.groups,
        "gap_causes": analysis.causes,
        "unattributed_device_ops": analysis.unattributed_ops,
    }
    if analysis.notes:
        meta["notes"] = list(analysis.notes)
    return RunData(meta, analysis.steps, pd.DataFrame(columns=REQUEST_COLUMNS))


def _environment(analysis: TraceAnalysis) -> dict[str, Any]:
    """Where the analysis ran (not where the trace was recorded: the trace says little of
    that)."""
    return environment.host_environment({"kind": "cuda", "name": _device_name(analysis)})


def _device_name(analysis: TraceAnalysis) -> str:
    names = sorted({t["device_name"] for t in analysis.traces if t.get("device_name")})
    return ", ".join(names) if names else "unknown (from trace)"
