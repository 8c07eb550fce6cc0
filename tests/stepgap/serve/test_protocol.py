"""Requests into jobs, and jobs into vLLM-shaped answers, without a server."""

import dataclasses
import json
import math

import pytest

from reference_engine import FinishReason, model_config
from stepgap.serve import prometheus
from stepgap.serve.config import Schedule, ServeConfig
from stepgap.serve.errors import APIError, ErrorType
from stepgap.serve.events import Finished
from stepgap.serve.logprobs import TokenLogprobs
from stepgap.serve.protocol import parse_request, to_job
from stepgap.serve.responses import ResponseContext, choice, chunk, sse
from stepgap.serve.stats import LiveStats, Window
from stepgap.serve.tokenizer import ByteTokenizer

CONFIG = ServeConfig(model=model_config("ernie-4.5-tiny"), max_model_len=64)
TOKENIZER = ByteTokenizer(CONFIG.model.vocab_size)


def job(**body):
    return to_job(parse_request({"prompt": [5, 6, 7], **body}), CONFIG, TOKENIZER)


def refused(body):
    with pytest.raises(APIError) as caught:
        to_job(parse_request(body), CONFIG, TOKENIZER)
    return caught.value


def test_a_token_id_prompt_with_vllm_options_becomes_a_job():
    made = job(
        max_tokens=4,
        temperature=0,
        seed=3,
        stream=True,
        return_token_ids=True,
        stream_options={"include_usage": True},
        logprobs=2,
        top_k=-1,
    )
    assert made.prompt == (5, 6, 7) and made.params.max_tokens == 4
    assert made.params.temperature == 0 and made.params.seed == 3 and made.params.top_k == 0
    assert made.stream and made.include_usage and made.token_ids and made.prompt_token_ids
    assert made.logprobs == 2 and made.text


def test_other_servers_ways_to_ask_for_ids_and_length():
    trtllm = job(detokenize=False)
    assert trtllm.token_ids and not trtllm.text and not trtllm.prompt_token_ids
    fastdeploy = job(max_tokens=5, min_tokens=5, stop_token_ids=[9])
    assert fastdeploy.params.ignore_eos and fastdeploy.params.stop_token_ids == ()
    assert job(prompt=[[5, 6]]).prompt == (5, 6)
    assert job(prompt="hi").prompt == tuple(3 + b for b in b"hi")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": []}, "prompt"),
        ({"prompt": [[1], [2]]}, "prompt"),
        ({"prompt": [1, "a"]}, "prompt"),
        ({"prompt": [-1]}, "prompt"),
        ({"prompt": [10**6]}, "prompt"),
        ({}, "prompt"),
        ({"prompt": [1], "max_tokens": 0}, "max_tokens"),
        ({"prompt": [1], "max_tokens": 1000}, "max_tokens"),
        ({"prompt": [1], "n": 2}, "n"),
        ({"prompt": [1], "stop": ["x"]}, "stop"),
        ({"prompt": [1], "echo": True}, "echo"),
        ({"prompt": [1], "logprobs": 21}, "logprobs"),
        ({"prompt": [1], "temperature": -1}, None),
        ({"prompt": [1], "top_p": 0}, None),
        ({"prompt": [1], "stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": [1], "min_tokens": 2, "max_tokens": 5}, "min_tokens"),
        ({"prompt": [1], "stream": "yes please"}, "stream"),
    ],
)
def test_bad_requests_are_refused_with_a_400_naming_the_field(body, param):
    error = refused(body)
    assert error.type is ErrorType.BAD_REQUEST and error.status == 400
    assert error.param == param and "\n" not in error.message
    assert json.loads(json.dumps(error.body()))["error"]["code"] == 400


def test_logprobs_up_to_the_servers_max():
    few = dataclasses.replace(CONFIG, max_logprobs=3)
    assert to_job(parse_request({"prompt": [1], "logprobs": 3}), few, TOKENIZER).logprobs == 3
    for config, asked in ((few, 4), (dataclasses.replace(CONFIG, max_logprobs=0), 0)):
        with pytest.raises(APIError, match="logprobs"):
            to_job(parse_request({"prompt": [1], "logprobs": asked}), config, TOKENIZER)


def test_an_unknown_model_is_a_404_and_unknown_fields_are_ignored():
    assert refused({"prompt": [1], "model": "gpt-9"}).status == 404
    assert job(model=CONFIG.model_name, some_vendor_option=1).prompt == (5, 6, 7)
    with pytest.raises(APIError):
        parse_request([1, 2])


def test_chunks_carry_ids_prompt_ids_first_and_logprobs_as_vllm_does():
    ctx = ResponseContext.new(job(return_token_ids=True, logprobs=1), "m", TOKENIZER)
    entry = TokenLogprobs(-0.25, ((9, -0.25), (4, -1.5)))
    first = choice(ctx, [9], [entry], None, first=True)
    assert first["token_ids"] == [9] and first["prompt_token_ids"] == [5, 6, 7]
    assert first["text"] == " 9" and first["finish_reason"] is None
    assert first["logprobs"] == {
        "tokens": [" 9"],
        "token_logprobs": [-0.25],
        "top_logprobs": [{" 9": -0.25}],
        "text_offset": [0],
    }
    done = Finished(FinishReason.STOP_TOKEN, 9, 2)
    last = choice(ctx, [9], [None], done, first=False, text_offset=2)
    assert "prompt_token_ids" not in last and last["finish_reason"] == "stop"
    assert last["stop_reason"] == 9 and last["logprobs"]["token_logprobs"] == [None]
    line = sse(chunk(ctx, [last]))
    assert line.startswith("data: {") and line.endswith("}\n\n")
    assert json.loads(line[6:])["object"] == "text_completion"


def test_token_names_as_ids_and_no_text_for_trtllm():
    ctx = ResponseContext.new(
        job(detokenize=False, logprobs=0, return_tokens_as_token_ids=True), "m", TOKENIZER
    )
    out = choice(ctx, [9, 4], [None, None], None, first=True)
    assert out["text"] == "" and out["token_ids"] == [9, 4]
    assert out["logprobs"]["tokens"] == ["token_id:9", "token_id:4"]


def test_config_refuses_faults_outside_overlap_and_bad_values():
    with pytest.raises(ValueError, match="overlap"):
        ServeConfig(model=CONFIG.model, faults=("no-stop-lag",))
    assert ServeConfig(model=CONFIG.model, mode="overlap", faults=("no_stop_lag",)).faults
    for bad in ({"mode": "fast"}, {"port": 70000}, {"max_num_seqs": 0}, {"max_model_len": 2}):
        with pytest.raises(ValueError):
            ServeConfig(model=CONFIG.model, **bad)
    assert ServeConfig(model=CONFIG.model, mode="overlap").mode is Schedule.OVERLAP


def test_metrics_render_as_prometheus_text():
    stats = LiveStats()
    stats.count_request(FinishReason.LENGTH)
    stats.count_rejected()
    text = prometheus.render(stats.snapshot(), {"model_name": "m", "mode": "sync"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    values = dict(line.rsplit(" ", 1) for line in lines)
    assert values['stepgap_num_requests_running{mode="sync",model_name="m"}'] == "0"
    assert values['stepgap_requests_total{mode="sync",model_name="m",outcome="length"}'] == "1"
    assert values['stepgap_requests_total{mode="sync",model_name="m",outcome="rejected"}'] == "1"
    assert values['stepgap_step_gap_ms_bucket{mode="sync",model_name="m",le="+Inf"}'] == "0"
    assert "NaN" not in text and "# TYPE stepgap_host_step_time_ms histogram" in text


def test_step_figures_fill_histograms_and_recent_quantiles():
    window = Window()
    for value in (0.3, 0.3, 4.0, math.nan):
        window.add(value)
    figure = window.summary()
    assert figure.count == 3 and figure.total == pytest.approx(4.6) and figure.last == 4.0
    assert figure.buckets[0.2] == 0 and figure.buckets[0.5] == 2 and figure.buckets[5] == 3
    assert figure.quantiles[0.5] == 0.3 and figure.quantiles[0.99] == 4.0
