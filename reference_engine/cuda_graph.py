"""CUDA-graph capture and replay of decode steps over static buffers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch


class GraphKey(NamedTuple):
    """Which variant of the decode step a graph holds. `parity` and `results` pick the
    pinned host tables it reads and writes; both None: the decode forward alone, without
    the table copies (the decode rows of a mixed step)."""

    parity: int | None
    results: int | None
    timed: bool
    logprobs: bool


class DecodeGraphs:
    """Captures `step(key)` once per `GraphKey` and replays it: a decode step is then one
    graph launch.

    `step` must read and write only memory whose addresses never change (the runner's
    static buffers, its pinned host buffers and the KV cache): a replay re-runs the recorded
    kernels on it. All graphs share one memory pool; they run one at a time on one stream.
    """

    def __init__(self, step: Callable[[GraphKey], None], warmup_iters: int = 2) -> None:
        self.step, self.warmup_iters = step, warmup_iters
        self.graphs: dict[GraphKey, torch.cuda.CUDAGraph] = {}
        self.pool: Any = None  # the shared memory pool's handle (torch's private type)

    def ensure(self, keys: Iterable[GraphKey]) -> None:
        """Capture the graphs of `keys` not captured yet (syncs: run boundaries only)."""
        for key in keys:
            if key not in self.graphs:
                self.graphs[key] = self._capture(key)

    def replay(self, key: GraphKey) -> None:
        self.graphs[key].replay()

    @torch.inference_mode()
    def _capture(self, key: GraphKey) -> torch.cuda.CUDAGraph:
        self._warm_up(key)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.step(key)
        self.pool = graph.pool()
        return graph

    def _warm_up(self, key: GraphKey) -> None:
        """Run the step eagerly first so kernels compile and cuBLAS and the allocator settle."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.step(key)
        torch.cuda.current_stream().wait_stream(side)
