"""A benchmark as a run directory (`source: endpoint`), so `compare`, `report` and `gate`
read it like a run of stepgap's own engine.

It goes through the library every run goes through: `metrics.request_table` (one row per
request: TTFT, ITL, E2E, TPOT, from the client's clock), `metrics.summarize` and
`runs.RunData`, so the summary has the keys every other run has. An endpoint has no
device steps: steps.csv is empty and the gap figures are absent (NaN). tokens.jsonl holds
the token ids the server returned, the top-2 logprob margins where it sent two or more
logprobs (else NaN: no near-tie classification), and the client's arrival times.
`run.json` adds `serving`: the same benchmark with `vllm bench serve`'s key names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from reference_engine.request import FinishReason, Request, SamplingParams
from stepgap import environment, metrics
from stepgap.bench.config import BenchConfig
from stepgap.bench.records import BenchOutcome, RequestResult
from stepgap.bench.serving_metrics import serving_metrics
from stepgap.runs import RunData
from stepgap.workloads import Workload

if TYPE_CHECKING:
    from reference_engine.engine import RunOutput

SOURCE = "endpoint"
MAX_ERRORS_SAVED = 20


@dataclass(frozen=True)
class EndpointRun:
    """What `metrics.request_table` reads of an engine run: the requests, as the client saw
    them (arrival: when the request was sent; token times: when each token arrived)."""

    requests: list[Request]


def to_run_data(outcome: BenchOutcome, config: BenchConfig, workload: Workload) -> RunData:
    results = outcome.results
    ids = [r.request.request_id for r in results]
    tokens = {i: list(r.token_ids) for i, r in zip(ids, results, strict=True)}
    margins = {i: list(r.margins) for i, r in zip(ids, results, strict=True)}
    times = {i: list(r.token_times_s) for i, r in zip(ids, results, strict=True)}
    steps = pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in metrics.STEP_COLUMNS})
    # request_table reads only `.requests` of an engine run
    endpoint = cast("RunOutput", EndpointRun([as_request(r) for r in results]))
    requests = metrics.request_table(endpoint)
    summary = metrics.summarize(steps, requests, times, tokens, outcome.duration_s)
    meta = _meta(outcome, config, workload, summary)
    return RunData(meta, steps, requests, tokens, margins, times)


def as_request(result: RequestResult) -> Request:
    """The engine's request record, filled from what the client received."""
    sent = result.request
    params = SamplingParams(
        max_tokens=sent.max_tokens,
        temperature=sent.temperature,
        top_k=sent.top_k,
        top_p=sent.top_p,
        seed=sent.seed,
        ignore_eos=sent.ignore_eos,
    )
    return Request(
        sent.request_id,
        list(sent.prompt),
        params,
        arrival_s=max(result.sent_s, 0.0),
        output=list(result.token_ids),
        margins=list(result.margins),
        token_times_s=list(result.token_times_s),
        finish_reason=finish_reason(result),
    )


def finish_reason(result: RequestResult) -> FinishReason | None:
    """OpenAI's finish_reason in the engine's terms (None: the request did not finish)."""
    if result.error is not None:
        return None
    if result.finish_reason == "length":
        return FinishReason.LENGTH
    if result.finish_reason == "stop":
        return FinishReason.STOP_TOKEN if isinstance(result.stop_reason, int) else FinishReason.EOS
    return FinishReason.ABORT if result.finish_reason == "abort" else None


def _meta(outcome: BenchOutcome, config: BenchConfig, workload: Workload, summary: dict) -> dict:
    serving = serving_metrics(outcome.results, outcome.duration_s, config)
    failed = [r for r in outcome.results if not r.success]
    meta: dict[str, Any] = {
        "name": config.label,
        "mode": config.label,
        "source": SOURCE,
        "complete": not failed,
        "started": outcome.started,
        "environment": client_environment(),
        "config": {"bench": _jsonable(dataclasses.asdict(config)), "warmup_steps": 0},
        "workload": workload.describe(),
        "summary": summary,
        "serving": serving,
        "endpoint": {
            "url": config.url,
            "api": config.api.value,
            "model": outcome.model,
            "model_card": outcome.model_card,
        },
        "host_waits": {},
        "excluded_gaps": [],
    }
    if failed:
        meta["incomplete_reason"] = f"{len(failed)} of {len(outcome.results)} requests failed"
        meta["errors"] = [
            {"request_id": r.request.request_id, "error": r.error}
            for r in failed[:MAX_ERRORS_SAVED]
        ]
    return meta


def client_environment() -> dict[str, Any]:
    """Where the client ran (the server's machine is the server's business), torch-free."""
    device = {"kind": "endpoint", "name": "endpoint (HTTP)"}
    return environment.host_environment(device, cpu=environment.cpu_model())


def _dtype(column: str) -> str:
    return "object" if column in ("kind", "excluded") else "float64"


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in value.items()}
