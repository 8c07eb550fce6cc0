"""`stepgap bench`: a workload against any OpenAI-compatible server, as a run directory.

The workload's requests (`plan`) go out as streamed `/v1/completions` with token-id
prompts, in the form each server wants (`apis`: vLLM, SGLang, FastDeploy, TensorRT-LLM,
`stepgap serve`); an aiohttp client (`client`) times every chunk and reads token ids and
logprobs from it (`sse`, `chunks`, `records`). The result is a run directory
(`rundir`, `source: endpoint`) with `vllm bench serve`'s figures (`serving_metrics`).
`calibrate` measures the client's own ingest rate and timing error. HTTP only: no torch.
"""
