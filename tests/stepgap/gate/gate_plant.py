"""Plant regressions in copies of the real runs under tests/data/gate, by editing their tables.

Every planted run starts as a real CPU run (`stepgap run --num-requests 8`); only the table
named changes, and the summary is recomputed from the edited tables with
`stepgap.metrics.summarize`, so the planted run is what the engine would have saved had it
behaved that way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stepgap.metrics import summarize, token_digest
from stepgap.runs import RunData, load_run, save_run

REPO = Path(__file__).parents[3]
DATA = REPO / "tests" / "data" / "gate"
RUN_A = DATA / "smoke-a"  # `stepgap run --num-requests 8`, both modes
RUN_B = DATA / "smoke-b"  # the same command again, right after: a noisy-but-equal pair
JUNIT_XSD = DATA / "junit.xsd"


def copy_group(source: Path, target: Path) -> Path:
    """A private copy of a committed run group, safe to edit."""
    shutil.copytree(source, target)
    return target


def _resummarize(run: RunData, extra_wall_s: float = 0.0) -> None:
    summary = summarize(
        run.steps,
        run.requests,
        run.token_times,
        run.tokens,
        float(run.summary["wall_s"]) + extra_wall_s,
        int(run.summary["warmup_steps"]),
    )
    run.meta["summary"] = {**run.summary, **summary}


def scale_gaps(run_dir: Path, factor: float) -> RunData:
    """Make every decode step's gap `factor` times as long, shifting the later steps so the
    device timeline stays consistent; the extra idle time is attributed to no host phase."""
    run = load_run(run_dir)
    steps = run.steps.copy()
    decode = (steps.kind == "decode") & steps.gap_before_us.notna()
    extra = (steps.gap_before_us * (factor - 1.0)).where(decode, 0.0)
    shift = extra.cumsum()
    steps["gap_before_us"] = steps.gap_before_us + extra.where(decode)
    steps["gap_other_us"] = steps.gap_other_us + extra.where(decode)
    steps["device_start_us"] = steps.device_start_us + shift
    steps["device_end_us"] = steps.device_end_us + shift
    run.steps = steps
    _resummarize(run, extra_wall_s=float(shift.iloc[-1]) / 1e6)
    save_run(run, run_dir, force=True)
    return run


def change_token(run_dir: Path, request_id: int, position: int) -> RunData:
    """Replace one token id of one request by the next id up, as a scheduling bug that fed
    a wrong token would."""
    run = load_run(run_dir)
    tokens = list(run.tokens[request_id])
    tokens[position] = tokens[position] + 1
    run.tokens[request_id] = tokens
    run.meta["summary"] = {**run.summary, "token_digest": token_digest(run.tokens)}
    save_run(run, run_dir, force=True)
    return run


def write_rules(directory: Path, *checks: str, extra: str = "") -> Path:
    """A rules file with one [[rule]] per check."""
    body = "".join(f'[[rule]]\ncheck = "{check}"\n\n' for check in checks)
    path = directory / "rules.toml"
    path.write_text(extra + body)
    return path
