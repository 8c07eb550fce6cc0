"""CUDA-graph capture and replay of whole decode steps over static buffers."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

# (input buffer parity, output buffer parity, timed)
GraphKey = tuple[int, int, bool]


class DecodeGraphs:
    """Captures `step(input_parity, output_parity, timed)` once per buffer pair and timing
    choice, and replays it: a decode step is then one graph launch.

    `step` must read and write only memory whose addresses never change (the runner's
    static buffers, its pinned host buffers and the KV cache): a replay re-runs the recorded
    kernels on it. All graphs share one memory pool; they run one at a time on one stream.
    """

    def __init__(self, step: Callable[[int, int, bool], None], warmup_iters: int = 2) -> None:
        self.step, self.warmup_iters = step, warmup_iters
        self.graphs: dict[GraphKey, torch.cuda.CUDAGraph] = {}
        self.pool = None

    def ensure(self, pairs: Iterable[tuple[int, int]], timed: bool) -> None:
        """Capture the graphs of `pairs` not captured yet (syncs: run boundaries only)."""
        for parity, results in sorted(pairs):
            key = (parity, results, timed)
            if key not in self.graphs:
                self.graphs[key] = self._capture(key)

    def replay(self, parity: int, results: int, timed: bool) -> None:
        self.graphs[(parity, results, timed)].replay()

    @torch.inference_mode()
    def _capture(self, key: GraphKey) -> torch.cuda.CUDAGraph:
        self._warm_up(key)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.step(*key)
        self.pool = graph.pool()
        return graph

    def _warm_up(self, key: GraphKey) -> None:
        """Run the step eagerly first so kernels compile and cuBLAS and the allocator settle."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.step(*key)
        torch.cuda.current_stream().wait_stream(side)
