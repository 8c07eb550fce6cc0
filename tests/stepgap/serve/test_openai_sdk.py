"""Acceptance 2: a third-party client, the `openai` Python SDK, against `stepgap serve`."""

import openai
import pytest


@pytest.fixture(scope="module")
def client(servers):
    url = servers["sync"].url + "/v1"
    with openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["ernie-4.5-tiny"]


def test_a_completion_with_token_ids_and_logprobs(client):
    completion = client.completions.create(
        model="ernie-4.5-tiny",
        prompt=[5, 6, 7, 8],
        max_tokens=6,
        temperature=0,
        logprobs=2,
        extra_body={"return_token_ids": True, "ignore_eos": True},
    )
    choice = completion.choices[0]
    token_ids = choice.model_extra["token_ids"]
    assert len(token_ids) == 6 and choice.finish_reason == "length"
    assert choice.model_extra["prompt_token_ids"] == [5, 6, 7, 8]
    assert choice.text == "".join(f" {t}" for t in token_ids)
    assert completion.usage.prompt_tokens == 4 and completion.usage.completion_tokens == 6
    assert len(choice.logprobs.tokens) == 6 and len(choice.logprobs.top_logprobs) == 6


def test_a_stream_gives_the_same_tokens_chunk_by_chunk(client):
    body = {"return_token_ids": True, "ignore_eos": True}
    whole = client.completions.create(
        model="ernie-4.5-tiny", prompt=[9, 9, 9], max_tokens=5, temperature=0, extra_body=body
    )
    stream = client.completions.create(
        model="ernie-4.5-tiny",
        prompt=[9, 9, 9],
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=body,
    )
    chunks = list(stream)
    streamed = [t for c in chunks if c.choices for t in c.choices[0].model_extra["token_ids"]]
    assert streamed == whole.choices[0].model_extra["token_ids"]
    assert chunks[-1].usage.completion_tokens == 5 and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_a_text_prompt_works_too(client):
    completion = client.completions.create(model="ernie-4.5-tiny", prompt="hello", max_tokens=2)
    assert completion.usage.prompt_tokens == 5 and completion.choices[0].text


def test_errors_raise_the_sdks_exceptions(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="ernie-4.5-tiny", prompt=[1], max_tokens=0)
    assert bad.value.status_code == 400 and "max_tokens" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt=[1], max_tokens=1)
