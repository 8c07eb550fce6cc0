"""A trace analysis as a run directory, so `compare`, `report` and `gate` read it like a run."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pandas as pd

from stepgap import environment
from stepgap.analyze.analysis import REQUEST_COLUMNS, TraceAnalysis
from stepgap.runs import RunData

MODES = ("sync", "overlap", "unknown")


def to_run_data(analysis: TraceAnalysis, name: str, mode: str = "unknown") -> RunData:
    """The analysis as `RunData`: steps.csv is the per-step table, requests.csv and
    tokens.jsonl are empty (a trace holds no requests), `meta["source"]` is
    `trace:<format>`."""
    env = environment.collect({"kind": "trace"})
    env.pop("driver", None)
    env["device"] = {"kind": "cuda", "name": _device_name(analysis)}
    meta = {
        "name": name,
        "mode": mode,
        "source": f"trace:{analysis.format}",
        "complete": True,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": env,
        "config": {
            "analyze": asdict(analysis.options),
            "step_source": analysis.step_source,
            "warmup_steps": analysis.warmup_steps,
        },
        "workload": {"name": name, "label": name, "source": "trace"},
        "summary": analysis.summary,
        "host_waits": {},
        "traces": analysis.traces,
        "groups": analysis.groups(),
        "unattributed_device_ops": analysis.unattributed_ops,
    }
    if analysis.notes:
        meta["notes"] = list(analysis.notes)
    return RunData(meta, analysis.steps, pd.DataFrame(columns=REQUEST_COLUMNS))


def _device_name(analysis: TraceAnalysis) -> str:
    names = sorted({t["device_name"] for t in analysis.traces if t.get("device_name")})
    return ", ".join(names) if names else "unknown (from trace)"
