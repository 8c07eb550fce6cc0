"""Acceptance 1, on loopback: `stepgap serve --mode sync` and `--mode overlap`, `stepgap
bench` against each, `stepgap compare` -> identical; a planted overlap fault in the server
-> the divergence found and located. The run directories are read by `compare`, `report`
and `gate` like any run, and `stepgap bench` never imports torch."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from reference_engine import Engine, EngineConfig
from stepgap.cli import app
from stepgap.runs import load_run
from stepgap.workloads import load_workload

from .conftest import ROOT

WORKLOAD = "smoke"  # 32 requests, 8-48 token prompts, 32 tokens each, greedy and sampled


def bench(url, label, out):
    """`stepgap bench` in its own process, with the modules it imported."""
    command = [sys.executable, "-X", "importtime", "-m", "stepgap", "bench", "--base-url", url]
    args = ["--workload", WORKLOAD, "--label", label, "--out", str(out), "--logprobs", "2"]
    done = subprocess.run(
        [*command, *args, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in lines}
    return json.loads(done.stdout), modules


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def endpoint_runs(servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("endpoint")
    runs = {"group": root / "group", "faulty": root / "faulty"}
    reports = {
        "sync": bench(servers["sync"].url, "sync", runs["group"] / "sync"),
        "overlap": bench(servers["overlap"].url, "overlap", runs["group"] / "overlap"),
        "faulty": bench(servers["faulty"].url, "overlap", runs["faulty"]),
    }
    return runs, reports


def test_sync_and_overlap_servers_emit_identical_tokens(endpoint_runs):
    runs, reports = endpoint_runs
    for report, _ in reports.values():
        assert report["serving"]["completed"] == 32 and report["serving"]["failed"] == 0
        assert report["serving"]["total_output_tokens"] == 32 * 32
    result = invoke("compare", runs["group"] / "sync", runs["group"] / "overlap", "--json")
    comparison = json.loads(result.stdout)
    assert comparison["tokens_identical"] is True
    assert comparison["identity"]["requests_compared"] == 32


def test_a_planted_overlap_fault_is_found_and_located(endpoint_runs):
    runs, _ = endpoint_runs
    result = invoke("compare", runs["group"] / "sync", runs["faulty"], "--json")
    comparison = json.loads(result.stdout)
    assert comparison["tokens_identical"] is False
    first = comparison["identity"]["first"]
    # placeholder-token: the first decode embeds id 0, not the prefill's sampled token
    assert first["request_id"] == 0 and first["position"] == 1
    assert first["verdict"] == "logic error"
    assert comparison["identity"]["requests_differing"] == 32
    assert "first at request 0 position 1" in " ".join(
        invoke("compare", runs["group"] / "sync", runs["faulty"]).stdout.split()
    )


def test_the_server_emits_what_the_engine_emits_offline(endpoint_runs):
    runs, _ = endpoint_runs
    workload = load_workload(WORKLOAD)
    config = EngineConfig(
        model=workload.model_config(),
        max_num_seqs=8,
        max_model_len=workload.max_model_len,
        device="cpu",
    )
    engine = Engine(config)
    try:
        offline = engine.run(workload.requests(), "sync")
    finally:
        engine.close()
    served = load_run(runs["group"] / "sync")
    assert served.tokens == {r.request_id: r.output for r in offline.requests}
    margins = served.margins[0]  # from the server's top-2 logprobs: the engine's margins
    assert margins == pytest.approx(offline.requests[0].margins, abs=1e-4)


def test_endpoint_runs_are_runs_for_compare_report_and_gate(endpoint_runs, tmp_path):
    runs, _ = endpoint_runs
    run = load_run(runs["group"] / "overlap")
    assert run.meta["source"] == "endpoint" and run.mode == "overlap" and run.complete
    assert len(run.steps) == 0 and len(run.requests) == 32
    assert run.meta["serving"]["mean_ttft_ms"] > 0 and run.meta["endpoint"]["api"] == "vllm"
    invoke("report", runs["group"], "-o", tmp_path / "report.html")
    assert (tmp_path / "report.html").stat().st_size > 0
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "same tokens"\ncheck = "tokens_identical == true"\n')
    invoke("gate", runs["group"], "--rules", rules)


def test_bench_imports_no_torch(endpoint_runs):
    _, reports = endpoint_runs
    for _, modules in reports.values():
        assert "aiohttp" in modules
        assert "torch" not in modules and "reference_engine.engine" not in modules
