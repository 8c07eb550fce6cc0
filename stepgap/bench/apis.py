"""The servers `stepgap bench` talks to, and how each is asked to return token ids.

All four serve OpenAI's `POST /v1/completions` with `stream: true`, take a token-id list
as `prompt`, and stream `data: {json}` chunks. They differ in the option that returns the
generated token ids, the field that carries them, and how to run to `max_tokens`:

| server     | ask for ids             | ids in each chunk's choice | run to max_tokens |
| ---------- | ----------------------- | -------------------------- | ----------------- |
| vLLM       | `return_token_ids`      | `token_ids`                | `ignore_eos`      |
| SGLang     | `return_token_ids`      | `token_ids`                | `ignore_eos`      |
| FastDeploy | `return_token_ids`      | `completion_token_ids`     | `min_tokens`      |
| TRT-LLM    | `detokenize: false`     | `token_ids` (text is "")   | `ignore_eos`      |

Sources: vllm/entrypoints/openai/completion/protocol.py (CompletionRequest,
CompletionResponseStreamChoice); python/sglang/srt/entrypoints/openai/protocol.py and
serving_completions.py (delta ids per chunk, prompt ids in the first);
fastdeploy/entrypoints/openai/protocol.py (no `ignore_eos` field: unknown fields are
dropped, so `min_tokens` does it) and serving_completion.py (several choices in one chunk
with `max_streaming_response_tokens`); tensorrt_llm/serve/openai_protocol.py (extra fields
are refused: send only its own) and postprocess_handlers.py (`token_ids` when not
detokenizing). `logprobs: n` is the completions API's; vLLM's `return_tokens_as_token_ids`
names logprob tokens "token_id:<id>". TensorRT-LLM returns more than 1 logprob only on its
PyTorch backend.
"""

from __future__ import annotations

import enum
from typing import Any

from stepgap.bench.plan import BenchRequest


class ServerApi(enum.StrEnum):
    VLLM = "vllm"
    SGLANG = "sglang"
    FASTDEPLOY = "fastdeploy"
    TRTLLM = "trtllm"


_TOKEN_IDS: dict[ServerApi, dict[str, Any]] = {
    ServerApi.VLLM: {"return_token_ids": True},
    ServerApi.SGLANG: {"return_token_ids": True},
    ServerApi.FASTDEPLOY: {"return_token_ids": True},
    ServerApi.TRTLLM: {"detokenize": False},
}


def completion_body(
    api: ServerApi, model: str, request: BenchRequest, logprobs: int | None
) -> dict[str, Any]:
    """The JSON body of one streamed completion for `api`."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(request.prompt),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        **_TOKEN_IDS[api],
        **_sampling_filters(request),
        **_run_to_length(api, request),
    }
    if logprobs is not None:
        body["logprobs"] = logprobs
        if api is ServerApi.VLLM:
            body["return_tokens_as_token_ids"] = True
    return body


def _sampling_filters(request: BenchRequest) -> dict[str, Any]:
    """Only filters that are on: the servers disagree on what "off" is (SGLang: top_k -1)."""
    filters: dict[str, Any] = {}
    if request.top_k > 0:
        filters["top_k"] = request.top_k
    if request.top_p < 1.0:
        filters["top_p"] = request.top_p
    return filters


def _run_to_length(api: ServerApi, request: BenchRequest) -> dict[str, Any]:
    if not request.ignore_eos:
        return {}
    if api is ServerApi.FASTDEPLOY:
        return {"min_tokens": request.max_tokens}
    return {"ignore_eos": True}
