"""CUDA-graph capture and replay of the decode forward over static buffers."""

from __future__ import annotations

from collections.abc import Callable

import torch


class DecodeGraph:
    """Captures `forward` once (after warm-up) and replays it.

    `forward` must read and write only tensors whose addresses never change (the runner's
    static buffers and the KV cache): a replay re-runs the recorded kernels on them.
    """

    def __init__(self, forward: Callable[[], None], warmup_iters: int = 2) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup_iters):  # lets cuBLAS and the allocator settle first
                forward()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            forward()

    def replay(self) -> None:
        self.graph.replay()
