"""`stepgap serve`: the reference engine behind an OpenAI-compatible server.

The engine runs on its own thread (`worker`), fed between steps through
`Engine.run(feed=)` (`feed`); FastAPI + uvicorn serve `/v1/completions` on the event loop
(`app`). Requests and answers follow vLLM's OpenAI server (`protocol`, `responses`);
`/metrics` shows the engine's live step gaps (`stats`, `prometheus`).
"""
