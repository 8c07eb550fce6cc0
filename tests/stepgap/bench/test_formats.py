"""The servers' wire formats: request bodies per server, SSE framing, and the chunks each
server streams back (shapes from their source; see stepgap.bench.apis)."""

import json
import math

import pytest

from stepgap.bench.apis import ServerApi, completion_body
from stepgap.bench.chunks import read_chunk
from stepgap.bench.plan import BenchRequest
from stepgap.bench.sse import DONE, SSEParser

REQUEST = BenchRequest(3, (5, 6, 7), 4, 0.8, 50, 0.95, 1234, True, 0.0)
GREEDY = BenchRequest(4, (5,), 2, 0.0, 0, 1.0, 1, False, 0.0)


def test_each_server_is_asked_for_token_ids_its_own_way():
    vllm = completion_body(ServerApi.VLLM, "m", REQUEST, logprobs=2)
    assert vllm["prompt"] == [5, 6, 7] and vllm["return_token_ids"] is True
    assert vllm["ignore_eos"] and vllm["return_tokens_as_token_ids"] and vllm["logprobs"] == 2
    assert vllm["stream"] and vllm["stream_options"] == {"include_usage": True}
    assert vllm["seed"] == 1234 and vllm["top_k"] == 50 and vllm["top_p"] == 0.95
    sglang = completion_body(ServerApi.SGLANG, "m", REQUEST, None)
    assert sglang["return_token_ids"] and "return_tokens_as_token_ids" not in sglang
    fastdeploy = completion_body(ServerApi.FASTDEPLOY, "m", REQUEST, None)
    assert fastdeploy["min_tokens"] == 4 and "ignore_eos" not in fastdeploy
    trtllm = completion_body(ServerApi.TRTLLM, "m", REQUEST, None)
    assert trtllm["detokenize"] is False and "return_token_ids" not in trtllm  # extra=forbid
    plain = completion_body(ServerApi.SGLANG, "m", GREEDY, None)
    assert "top_k" not in plain and "top_p" not in plain and "ignore_eos" not in plain


def test_sse_events_split_anywhere_crlf_comments_and_done():
    stream = b': ping\n\ndata: {"a": 1}\r\n\r\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    for size in (1, 2, 3, 7, len(stream)):
        parser, events = SSEParser(), []
        for i in range(0, len(stream), size):
            events += parser.feed(stream[i : i + size])
        events += parser.close()
        assert events == ['{"a": 1}', '{"b":\n2}', DONE]
    assert SSEParser().feed(b"event: x\n\n") == []
    unterminated = SSEParser()
    assert unterminated.feed(b'data: {"c": 3}') == [] and unterminated.close() == ['{"c": 3}']


def chunk(choice, **extra):
    return {"id": "x", "object": "text_completion", "choices": [choice], **extra}


def test_vllm_and_sglang_chunks():
    vllm = read_chunk(
        chunk(
            {
                "index": 0,
                "text": " a b",
                "token_ids": [7, 8],
                "finish_reason": "length",
                "stop_reason": None,
            }
        )
    )
    assert vllm.token_ids == (7, 8) and vllm.finish_reason == "length" and vllm.has_choices
    sglang = read_chunk(
        chunk(
            {"index": 0, "text": "", "token_ids": [2], "finish_reason": "stop", "matched_stop": 2}
        )
    )
    assert sglang.token_ids == (2,) and sglang.stop_reason == 2
    usage = read_chunk({"id": "x", "choices": [], "usage": {"completion_tokens": 9}})
    assert not usage.has_choices and usage.completion_tokens == 9 and usage.token_ids == ()


def test_fastdeploy_packs_several_choices_with_completion_token_ids():
    data = {
        "choices": [
            {"index": 0, "text": "a", "completion_token_ids": [4], "prompt_token_ids": [1, 2]},
            {"index": 0, "text": "b", "completion_token_ids": [5], "finish_reason": "length"},
        ]
    }
    update = read_chunk(data)
    assert update.token_ids == (4, 5) and update.finish_reason == "length"


def test_trtllm_ids_without_text_and_vllm_ids_from_logprob_tokens():
    trtllm = read_chunk(chunk({"index": 0, "text": "", "token_ids": [11, 12]}))
    assert trtllm.token_ids == (11, 12)
    logprobs = {
        "tokens": ["token_id:21", "token_id:22"],
        "token_logprobs": [-0.1, -2.0],
        "top_logprobs": [{"token_id:21": -0.1, "token_id:3": -0.6}, {"token_id:22": -2.0}],
        "text_offset": [0, 1],
    }
    update = read_chunk(chunk({"index": 0, "text": "xy", "logprobs": logprobs}))
    assert update.token_ids == (21, 22) and update.logprobs == (-0.1, -2.0)
    assert update.margins[0] == pytest.approx(0.5) and math.isnan(update.margins[1])


def test_errors_in_every_shape():
    nested = {"error": {"message": "bad prompt", "type": "BadRequestError", "code": 400}}
    flat = {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}
    assert read_chunk(nested).error == "bad prompt"
    assert read_chunk(flat).error == "too long"
    assert read_chunk(json.loads("[1]")).error.startswith("chunk is not a JSON object")
