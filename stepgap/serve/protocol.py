"""`POST /v1/completions` requests: the OpenAI fields, the extensions of the real servers
that say how to return token ids, and their translation into a typed job for the engine.

Supported, with where each comes from:
- `prompt`: one prompt, token ids (`[1, 2, 3]`, or `[[1, 2, 3]]`) or text (through
  `ByteTokenizer`). Lists of several prompts are refused (one request, one choice).
- `max_tokens`, `temperature` (default 1.0, as OpenAI), `top_p`, `top_k` (0 or -1: off),
  `seed`, `stop_token_ids`, `ignore_eos`, `n` = 1, `stream`, `stream_options`
  (`include_usage`, `continuous_usage_stats`), `logprobs` (0-20).
- `return_token_ids` (vLLM, SGLang, FastDeploy): the response carries `token_ids` per
  choice (in streams, each chunk's new ids) and `prompt_token_ids` (in the first chunk),
  as vLLM does (vllm/entrypoints/openai/completion/protocol.py, CompletionRequest and
  CompletionResponseStreamChoice; SGLang: python/sglang/srt/entrypoints/openai/protocol.py).
- `return_tokens_as_token_ids` (vLLM): logprobs name tokens "token_id:<id>".
- `detokenize: false` (TensorRT-LLM, tensorrt_llm/serve/openai_protocol.py): `text` is ""
  and `token_ids` carries the ids (tensorrt_llm/serve/postprocess_handlers.py).
- `min_tokens` (FastDeploy's way to run to max_tokens, it has no `ignore_eos`): 0, or at
  least max_tokens (then stop and EOS tokens are ignored, as vLLM's min_tokens does).
Options the engine cannot honour (stop strings, echo, penalties, logit_bias, suffix,
best_of > 1) get a 400 rather than a silent difference; unknown fields are ignored, as
vLLM does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from reference_engine.config import ConfigError
from reference_engine.request import SamplingParams
from stepgap.serve.config import ServeConfig
from stepgap.serve.errors import APIError, ErrorType, bad_request
from stepgap.serve.tokenizer import ByteTokenizer

TokenId = Annotated[StrictInt, Field(ge=0)]
Prompt = list[TokenId] | list[list[TokenId]] | str | list[str]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class CompletionRequest(BaseModel):
    """The request body as clients send it (validated, not yet checked against the model)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: Prompt
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int = 1
    best_of: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = None
    echo: bool = False
    stop: str | list[str] | None = None
    stop_token_ids: list[TokenId] | None = None
    ignore_eos: bool = False
    min_tokens: int = 0
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    suffix: str | None = None
    user: str | None = None
    return_token_ids: bool | None = None
    return_tokens_as_token_ids: bool | None = None
    detokenize: bool = True


@dataclass(frozen=True)
class CompletionJob:
    """One completion as the engine runs it and the response renders it."""

    prompt: tuple[int, ...]
    params: SamplingParams
    logprobs: int | None
    stream: bool
    include_usage: bool
    continuous_usage: bool
    token_ids: bool  # return each choice's token ids
    prompt_token_ids: bool  # and the prompt's (vLLM's return_token_ids)
    text: bool  # detokenize (TensorRT-LLM's detokenize=false: text is "")
    ids_as_strings: bool  # logprobs name tokens "token_id:<id>"


def parse_request(data: object) -> CompletionRequest:
    """Validate a decoded JSON body; a 400 naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    try:
        return CompletionRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not isinstance(p, int)) or "body"
        raise bad_request(f"{where}: {first['msg']}", where.split(".")[0]) from None


def to_job(body: CompletionRequest, config: ServeConfig, tokenizer: ByteTokenizer) -> CompletionJob:
    """Check a request against the served model and turn it into a job (APIError if not)."""
    _check_model(body.model, config)
    _check_unsupported(body)
    _check_logprobs(body.logprobs, config)
    prompt = _prompt(body.prompt, tokenizer)
    max_tokens = body.max_tokens if body.max_tokens is not None else 16
    _check_lengths(prompt, max_tokens, config)
    options = body.stream_options
    return CompletionJob(
        prompt=prompt,
        params=_sampling_params(body, max_tokens),
        logprobs=body.logprobs,
        stream=body.stream,
        include_usage=bool(body.stream and options and options.include_usage),
        continuous_usage=bool(body.stream and options and options.continuous_usage_stats),
        token_ids=bool(body.return_token_ids) or not body.detokenize,
        prompt_token_ids=bool(body.return_token_ids),
        text=body.detokenize,
        ids_as_strings=bool(body.return_tokens_as_token_ids),
    )


def _check_model(model: str | None, config: ServeConfig) -> None:
    if model is not None and model != config.model_name:
        raise APIError(f"The model `{model}` does not exist.", ErrorType.NOT_FOUND, "model")


def _check_unsupported(body: CompletionRequest) -> None:
    refused = {
        "n": body.n != 1,
        "best_of": body.best_of not in (None, 1),
        "echo": body.echo,
        "stop": bool(body.stop),
        "suffix": bool(body.suffix),
        "logit_bias": bool(body.logit_bias),
        "presence_penalty": body.presence_penalty not in (None, 0.0),
        "frequency_penalty": body.frequency_penalty not in (None, 0.0),
        "repetition_penalty": body.repetition_penalty not in (None, 1.0),
    }
    for name, bad in refused.items():
        if bad:
            raise bad_request(f"{name} is not supported by this server", name)
    if body.stream_options is not None and not body.stream:
        raise bad_request("stream_options can only be given with stream=true", "stream_options")
    if body.top_k is not None and body.top_k < -1:
        raise bad_request("top_k must be -1 or 0 (off) or positive", "top_k")


def _check_logprobs(logprobs: int | None, config: ServeConfig) -> None:
    """At most the server's `max_logprobs` (vLLM's `--max-logprobs`); none if it is 0."""
    if logprobs is None:
        return
    if config.max_logprobs == 0:
        raise bad_request("this server computes no logprobs (--max-logprobs 0)", "logprobs")
    if not 0 <= logprobs <= config.max_logprobs:
        raise bad_request(f"logprobs must be in [0, {config.max_logprobs}]", "logprobs")


def _prompt(prompt: Prompt, tokenizer: ByteTokenizer) -> tuple[int, ...]:
    """One prompt's token ids: the ids given, or the text's (a batch of one is one prompt)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list | str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
    elif all(isinstance(t, int) for t in prompt):
        ids = [int(t) for t in prompt]  # type: ignore[arg-type]
    else:
        raise bad_request("one prompt per request: lists of prompts are not supported", "prompt")
    if not ids:
        raise bad_request("prompt must not be empty", "prompt")
    too_large = [t for t in ids if t >= tokenizer.vocab_size]
    if too_large:
        raise bad_request(
            f"token id {too_large[0]} is out of vocabulary (size {tokenizer.vocab_size})", "prompt"
        )
    return tuple(ids)


def _check_lengths(prompt: tuple[int, ...], max_tokens: int, config: ServeConfig) -> None:
    if max_tokens < 1:
        raise bad_request("max_tokens must be at least 1", "max_tokens")
    if len(prompt) + max_tokens > config.max_prompt_and_output:
        raise bad_request(
            f"This model's maximum context length is {config.max_prompt_and_output} tokens; "
            f"the request asks for {len(prompt)} prompt + {max_tokens} output tokens",
            "max_tokens",
        )


def _sampling_params(body: CompletionRequest, max_tokens: int) -> SamplingParams:
    runs_to_length = body.min_tokens >= max_tokens
    if body.min_tokens and not runs_to_length:
        raise bad_request("min_tokens must be 0 or at least max_tokens", "min_tokens")
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_k=max(body.top_k or 0, 0),
            top_p=1.0 if body.top_p is None else body.top_p,
            seed=seed,
            stop_token_ids=() if runs_to_length else tuple(body.stop_token_ids or ()),
            ignore_eos=body.ignore_eos or runs_to_length,
            logprobs=body.logprobs,
        )
    except ConfigError as error:
        raise bad_request(str(error)) from None
