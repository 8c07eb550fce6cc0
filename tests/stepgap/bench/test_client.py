"""The client against a scripted vLLM-like server (in-process, aiohttp): token ids and
times recorded, failures kept apart, `vllm bench serve`'s figures, and the run directory
that `compare` reads."""

import asyncio
import json
import math

import pytest
from aiohttp import web

from reference_engine.config import ConfigError
from stepgap.bench.client import run_benchmark
from stepgap.bench.config import BenchConfig
from stepgap.bench.plan import BenchRequest, bench_requests, poisson_arrivals
from stepgap.bench.records import RequestResult
from stepgap.bench.rundir import to_run_data
from stepgap.bench.serving_metrics import serving_metrics
from stepgap.compare import compare_run_data
from stepgap.runs import load_run, save_run
from stepgap.workloads import load_workload

REFUSED, BROKEN = 13, 14  # first prompt ids the scripted server fails on


def scripted_app():
    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "scripted", "root": "s"}]})

    async def completions(request):
        body = await request.json()
        first = body["prompt"][0]
        if first == REFUSED:
            error = {"message": "refused", "type": "BadRequestError", "code": 400}
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for k in range(body["max_tokens"]):
            if first == BROKEN and k == 1:
                await response.write(
                    b'data: {"error": {"message": "engine died", "code": 500}}\n\n'
                )
                return response
            last = k == body["max_tokens"] - 1
            choice = {
                "index": 0,
                "text": "t",
                "token_ids": [first + k],
                "finish_reason": "length" if last else None,
            }
            await response.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
            await asyncio.sleep(0.002)
        usage = {"choices": [], "usage": {"completion_tokens": body["max_tokens"]}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    return app


async def bench_against_script(requests, **options):
    runner = web.AppRunner(scripted_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        config = BenchConfig(base_url=f"http://127.0.0.1:{port}", **options)
        return config, await run_benchmark(config, requests)
    finally:
        await runner.cleanup()


def request(i, first, max_tokens=5, arrival=0.0):
    return BenchRequest(i, (first, 1, 2), max_tokens, 0.0, 0, 1.0, 7, True, arrival)


def test_tokens_times_and_failures_are_recorded():
    requests = [request(0, 100), request(1, 200, 3, 0.01), request(2, REFUSED), request(3, BROKEN)]
    _, outcome = asyncio.run(bench_against_script(requests, label="sync"))
    ok, short, refused, broken = outcome.results
    assert outcome.model == "scripted"
    assert ok.success and ok.token_ids == (100, 101, 102, 103, 104) and ok.completion_tokens == 5
    assert ok.finish_reason == "length" and len(ok.token_times_s) == 5 == len(ok.chunk_times_s)
    assert list(ok.token_times_s) == sorted(ok.token_times_s) and ok.sent_s < ok.token_times_s[0]
    assert short.token_ids == (200, 201, 202) and short.sent_s >= 0.01
    assert not refused.success and refused.error == "HTTP 400: refused"
    assert not broken.success and broken.error == "engine died" and broken.token_ids == (BROKEN,)


def test_serving_metrics_follow_vllm_bench_serve():
    config = BenchConfig(base_url="http://x:1", max_concurrency=2)
    sent = BenchRequest(0, (1, 2, 3), 3, 0, 0, 1, 0, True, 0.0)
    result = RequestResult(
        sent, 0.5, (1.0, 1.5, 2.5), (7, 8, 9), (1.0, 1.5, 2.5), (), (), "length", None, 3
    )
    failed = RequestResult(sent, 0.5, (), (), (), (), (), None, None, None, "HTTP 500: x")
    figures = serving_metrics([result, failed], duration_s=4.0, config=config)
    assert figures["completed"] == 1 and figures["failed"] == 1
    assert figures["total_input_tokens"] == 3 and figures["total_output_tokens"] == 3
    assert figures["mean_ttft_ms"] == pytest.approx(500)  # first chunk - sent
    assert figures["mean_e2el_ms"] == pytest.approx(2000)  # last chunk - sent
    assert figures["mean_tpot_ms"] == pytest.approx(750)  # (E2EL - TTFT) / (3 - 1)
    assert figures["mean_itl_ms"] == pytest.approx(750) and figures["p99_itl_ms"] > 900
    assert figures["request_throughput"] == 0.25 and figures["output_throughput"] == 0.75
    assert figures["total_token_throughput"] == 1.5 and figures["max_concurrent_requests"] == 1
    assert figures["mean_client_queue_time_ms"] == pytest.approx(500)
    empty = serving_metrics([failed], duration_s=1.0, config=config)
    assert math.isnan(empty["mean_ttft_ms"]) and empty["completed"] == 0


def test_a_benchmark_is_a_run_directory_compare_reads(tmp_path):
    workload = load_workload("smoke").with_overrides(num_requests=4, output_len=3)
    requests = [request(r.request_id, 100 + r.request_id * 10, 3) for r in bench_requests(workload)]
    config, outcome = asyncio.run(bench_against_script(requests, label="overlap"))
    run = to_run_data(outcome, config, workload)
    path = save_run(run, tmp_path / "overlap")
    loaded = load_run(path)
    assert loaded.meta["source"] == "endpoint" and loaded.mode == "overlap" and loaded.complete
    assert loaded.tokens[2] == [120, 121, 122] and len(loaded.token_times[2]) == 3
    assert list(loaded.requests.finish_reason) == ["length"] * 4
    assert loaded.meta["serving"]["completed"] == 4 and len(loaded.steps) == 0
    assert compare_run_data(loaded, loaded).identity.identical


def test_failed_requests_mark_the_run_incomplete(tmp_path):
    workload = load_workload("smoke").with_overrides(num_requests=2, output_len=3)
    config, outcome = asyncio.run(bench_against_script([request(0, 100, 3), request(1, REFUSED)]))
    run = to_run_data(outcome, config, workload)
    assert not run.complete and run.meta["incomplete_reason"] == "1 of 2 requests failed"
    assert run.meta["errors"] == [{"request_id": 1, "error": "HTTP 400: refused"}]
    assert run.requests.finish_reason.tolist() == ["length", "unfinished"]


def test_an_unreachable_server_is_a_one_line_error():
    config = BenchConfig(base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"cannot read http://127\.0\.0\.1:9/v1/models"):
        asyncio.run(run_benchmark(config, [request(0, 1)]))


def test_arrivals_and_config_checks():
    workload = load_workload("smoke")
    assert [r.arrival_s for r in bench_requests(workload)] == [
        r.arrival_s for r in workload.requests()
    ]
    assert poisson_arrivals(3, math.inf, 0) == [0.0, 0.0, 0.0]
    times = poisson_arrivals(200, 100.0, 1)
    assert times[0] == 0 and times == sorted(times) and 1.0 < times[-1] < 3.0
    for bad in (
        {"base_url": "127.0.0.1:8000"},
        {"base_url": "http://h", "request_rate": 0},
        {"base_url": "http://h", "max_concurrency": 0},
        {"base_url": "http://h", "api": "tgi"},
        {"base_url": "http://h", "label": "a/b"},
        {"base_url": "http://h", "logprobs": 30},
    ):
        with pytest.raises(ConfigError):
            BenchConfig(**bad)
