"""Acceptance 3, in one test: 256 concurrent streams, 100 malformed requests and 50 clients
that disconnect mid-stream, all at once. Every valid stream completes with all its tokens,
every bad request gets a JSON error, no slot leaks (`/metrics` shows 0 running after), and
the server keeps serving."""

import asyncio
import json
import re

import aiohttp

from stepgap.bench.sse import DONE, SSEParser

MODEL = "ernie-4.5-tiny"
PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16], [17, 18]]
MAX_TOKENS = 8
MALFORMED = [  # (method, path, body): what a broken or hostile client sends
    ("POST", "/v1/completions", b"{not json"),
    ("POST", "/v1/completions", b""),
    ("POST", "/v1/completions", b"\xff\xfe\x00"),
    ("POST", "/v1/completions", b"[1, 2, 3]"),
    ("POST", "/v1/completions", {"max_tokens": 4}),
    ("POST", "/v1/completions", {"prompt": 5}),
    ("POST", "/v1/completions", {"prompt": [1, 2, 999999]}),
    ("POST", "/v1/completions", {"prompt": [-4]}),
    ("POST", "/v1/completions", {"prompt": [1], "max_tokens": 100000}),
    ("POST", "/v1/completions", {"prompt": [1], "n": 3}),
    ("POST", "/v1/completions", {"prompt": [1], "model": "no-such-model"}),
    ("POST", "/v1/completions", {"prompt": [1], "logprobs": 99}),
    ("POST", "/v1/completions", {"prompt": [1], "stream_options": {"include_usage": True}}),
    ("POST", "/v1/completions", {"prompt": [1], "temperature": "hot"}),
    ("GET", "/v1/completions", None),
    ("POST", "/v1/chat/nothing", {"prompt": [1]}),
]


def stream_body(prompt, max_tokens):
    return {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "return_token_ids": True,
        "stream_options": {"include_usage": True},
    }


async def valid_stream(session, url, i):
    """The token ids of one complete stream (its usage and [DONE] checked)."""
    prompt = PROMPTS[i % len(PROMPTS)]
    ids, usage, done, parser = [], None, False, SSEParser()
    async with session.post(url + "/v1/completions", json=stream_body(prompt, MAX_TOKENS)) as r:
        assert r.status == 200
        async for data in r.content.iter_any():
            for payload in parser.feed(data):
                if payload == DONE:
                    done = True
                    continue
                chunk = json.loads(payload)
                for choice in chunk["choices"]:
                    ids += choice["token_ids"]
                usage = chunk.get("usage") or usage
    assert done and usage["completion_tokens"] == MAX_TOKENS
    return i % len(PROMPTS), ids


async def malformed(session, url, i):
    method, path, body = MALFORMED[i % len(MALFORMED)]
    data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    async with session.request(method, url + path, data=data, headers=headers) as r:
        error = (await r.json(content_type=None))["error"]
        assert r.status in (400, 404, 405, 422), (r.status, error)
        assert error["message"] and error["code"] == r.status and error["type"]
        return r.status


async def disconnecting(session, url, i):
    """Read the first token of a long stream, then hang up."""
    body = stream_body(PROMPTS[i % len(PROMPTS)], 64)
    response = await session.post(url + "/v1/completions", json=body)
    assert response.status == 200
    parser = SSEParser()
    async for data in response.content.iter_any():
        if any(p != DONE and json.loads(p)["choices"] for p in parser.feed(data)):
            break
    response.close()  # drops the connection mid-stream


async def metrics(session, url):
    """Metric name (with its outcome label, if any) -> value."""
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            outcome = re.search(r'outcome="(\w+)"', name)
            values[name.split("{")[0] + (f"[{outcome[1]}]" if outcome else "")] = float(value)
    return values


async def settled(session, url, timeout_s=20.0):
    """/metrics once nothing runs, waits or is open (or after `timeout_s`)."""
    for _ in range(int(timeout_s / 0.1)):
        values = await metrics(session, url)
        busy = ("stepgap_num_requests_running", "stepgap_num_requests_waiting")
        if all(values[k] == 0 for k in (*busy, "stepgap_num_open_requests")):
            break
        await asyncio.sleep(0.1)
    return values


async def storm(url):
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        before = await metrics(session, url)
        jobs = [valid_stream(session, url, i) for i in range(256)]
        jobs += [malformed(session, url, i) for i in range(100)]
        jobs += [disconnecting(session, url, i) for i in range(50)]
        results = await asyncio.gather(*jobs)
        after = await settled(session, url)
        again = await valid_stream(session, url, 0)
    return results[:256], results[256:356], before, after, again


def test_concurrent_streams_malformed_requests_and_disconnects(servers):
    streams, statuses, before, after, again = asyncio.run(storm(servers["sync"].url))
    by_prompt = {}
    for prompt, ids in streams:
        assert len(ids) == MAX_TOKENS
        by_prompt.setdefault(prompt, set()).add(tuple(ids))
    assert all(len(outputs) == 1 for outputs in by_prompt.values())  # greedy: one answer each
    assert sorted(set(statuses)) == [400, 404, 405]
    assert after["stepgap_num_requests_running"] == 0
    assert after["stepgap_num_requests_waiting"] == 0
    assert after["stepgap_num_open_requests"] == 0
    counted = [MALFORMED[i % len(MALFORMED)][:2] == ("POST", "/v1/completions") for i in range(100)]
    grew = {
        outcome: after[f"stepgap_requests_total[{outcome}]"]
        - before[f"stepgap_requests_total[{outcome}]"]
        for outcome in ("length", "abort", "rejected")
    }
    assert grew == {"length": 256, "abort": 50, "rejected": sum(counted)}
    assert again == (0, list(next(iter(by_prompt[0]))))
