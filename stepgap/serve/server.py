"""Build the engine, warm it up, and serve it with uvicorn: the library behind `stepgap serve`."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

from reference_engine import Engine, EngineConfig, Request, SamplingParams
from stepgap.instrument import NvtxProbe
from stepgap.serve.app import create_app
from stepgap.serve.config import ServeConfig
from stepgap.serve.stats import LiveStats
from stepgap.serve.worker import EngineWorker


def build_engine(config: ServeConfig) -> Engine:
    """The engine with the server's shapes; probe on, so steps carry device times."""
    engine_config = EngineConfig(
        model=config.model,
        max_num_seqs=config.max_num_seqs,
        max_model_len=config.max_model_len,
        max_prefill_tokens=max(4096, config.max_model_len),
        device=config.device,
        seed=config.engine_seed,
        faults=config.faults,
    )
    return Engine(engine_config, NvtxProbe(enabled=True))


def warm_up(engine: Engine, config: ServeConfig) -> None:
    """A short unmeasured run, so one-time costs stay out of the first requests."""
    length = max(1, min(8, config.max_model_len - 4))
    params = SamplingParams(max_tokens=2, ignore_eos=True)
    count = min(config.max_num_seqs, 4)
    engine.run([Request(i, [3 + i] * length, params) for i in range(count)], "sync")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the address is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve(config: ServeConfig, on_ready: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM; open streams get `graceful_shutdown_s` to finish."""
    engine = build_engine(config)
    try:
        warm_up(engine, config)
        stats = LiveStats()
        worker = EngineWorker(
            engine,
            config.mode,
            stats,
            config.idle_close_s,
            config.max_run_steps,
            logprobs=config.max_logprobs > 0,
        )
        app = create_app(config, worker, stats)
        sock = bind(config.host, config.port)
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        uv_config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=config.graceful_shutdown_s,
        )
        on_ready(f"http://{host}:{port}")
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        engine.close()
