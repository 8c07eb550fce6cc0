"""Runs the model on the device: static buffers, input preparation, prefill and decode."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from reference_engine.config import ModelConfig
from reference_engine.cuda_graph import DecodeGraphs
from reference_engine.device import Device
from reference_engine.faults import Fault
from reference_engine.kernels import KernelBackend, default_backend
from reference_engine.kernels.host_io import copy_words, stage_in, stage_out, stamp_clock
from reference_engine.kv_cache import KVCache
from reference_engine.model import MoEDecoder
from reference_engine.sampler import SamplingTensors, sample
from reference_engine.scheduler import ScheduledStep, StepKind

# Columns of the packed per-slot input table (int64); the last one holds two fp32 values.
POSITION, SEED, TOP_K, SAMPLING_FLOATS = range(4)
TEMPERATURE, TOP_P = range(2)  # the two fp32 of SAMPLING_FLOATS
# Columns of the packed per-slot output table (int64); MARGIN holds an fp32 (and padding).
# Its last row is the step's device clock stamps: START, END (ns).
TOKEN, MARGIN = range(2)
START, END = range(2)
PLACEHOLDER_TOKEN = 0  # what planted fault PLACEHOLDER_TOKEN leaves for the first decode


@dataclass
class StepBuffers:
    """One step's inputs and outputs, per slot, packed so each direction is one copy.

    The device copy has fixed addresses (the decode graphs read them); host copies are
    pinned and double-buffered by step parity: preparing step N+1 never overwrites the
    inputs step N's copy still reads, and step N+1's results never land on step N's before
    the host post-processed them."""

    inputs: torch.Tensor  # (S, 4) int64: position, seed, top_k, (temperature, top_p) fp32
    prompt_ids: torch.Tensor  # (P,) int64: the prefill step's prompts, packed
    outputs: torch.Tensor  # (S + 1, 2) int64: token, margin fp32; last row: clock stamps

    @classmethod
    def allocate(cls, slots: int, prompt_capacity: int, make) -> StepBuffers:
        return cls(
            make((slots, 4), torch.int64),
            make((prompt_capacity,), torch.int64),
            make((slots + 1, 2), torch.int64),
        )

    @property
    def sampling_floats(self) -> torch.Tensor:
        """(S, 2) fp32 view: temperature, top_p."""
        return self.inputs[:, SAMPLING_FLOATS:].view(torch.float32)

    @property
    def tokens(self) -> torch.Tensor:
        return self.outputs[:-1, TOKEN]

    @property
    def margins(self) -> torch.Tensor:
        return self.outputs[:-1, MARGIN:].view(torch.float32)[:, 0]

    @property
    def start_stamp(self) -> torch.Tensor:
        return self.outputs[-1, START:END]


@dataclass(frozen=True)
class PreparedStep:
    """What the device work of one step needs besides the buffers."""

    kind: StepKind
    parity: int  # which host buffers hold its inputs
    results: int  # which host buffers receive its outputs (the same parity, unless faulty)
    segments: tuple[tuple[int, int, int], ...] = ()  # prefill: (slot, offset, length)
    prompt_tokens: int = 0


class ModelRunner:
    """Owns the model, KV cache and buffers; prepares inputs on the host, runs steps on the
    device. Sampled tokens stay on the device (`next_tokens`) and feed the next decode
    directly; the host gets a copy through the pinned output buffers.

    Every step's first and last device op are the packed-table copies (`kernels.host_io`),
    which stamp the device clock: the step's device interval is exactly its own work. On
    CUDA a decode step is one graph replay of all of it."""

    def __init__(
        self,
        config: ModelConfig,
        device: Device,
        num_slots: int,
        max_model_len: int,
        max_prefill_tokens: int,
        seed: int = 0,
        cuda_graphs: bool = True,
        kernels: KernelBackend | None = None,
    ) -> None:
        self.config, self.device = config, device
        self.num_slots, self.max_model_len = num_slots, max_model_len
        self.kernels = kernels or default_backend(device.kind)
        dev, dtype = device.torch_device, device.dtype
        self.model = MoEDecoder.build(config, max_model_len, dev, dtype, seed)
        self.model.use_kernels(self.kernels)
        self.cache = KVCache(config, num_slots, max_model_len, dev, dtype)
        prompt_capacity = max(max_prefill_tokens, max_model_len)
        self.dev = StepBuffers.allocate(
            num_slots, prompt_capacity, lambda shape, dt: torch.zeros(shape, dtype=dt, device=dev)
        )
        self.next_tokens = torch.zeros(num_slots, dtype=torch.int64, device=dev)
        self.host = [StepBuffers.allocate(num_slots, prompt_capacity, device.pinned) for _ in "ab"]
        self._host_outputs = [buffers.outputs.numpy() for buffers in self.host]  # views
        self._clock = device.pinned((1,), torch.int64)
        for buffers in (self.dev, *self.host):
            self._idle_inputs(buffers)
        self.plant_faults(())
        self.graphs = None
        if cuda_graphs and device.kind == "cuda":
            self.graphs = DecodeGraphs(self._graphed_decode)
            self.prepare_run(timed=True)

    def plant_faults(self, faults: tuple[Fault, ...]) -> None:
        """Set the planted faults of the next run (testing only; see reference_engine.faults)."""
        self._input_buffers = 1 if Fault.STALE_PINNED_BUFFER in faults else 2
        self._result_buffers = 1 if Fault.UNDERSIZED_RING in faults else 2
        self._feeds_placeholder = Fault.PLACEHOLDER_TOKEN in faults

    def prepare_run(self, timed: bool) -> None:
        """Capture the decode graphs the next run replays (run boundaries only: it syncs)."""
        if self.graphs is not None:
            pairs = {(i % self._input_buffers, i % self._result_buffers) for i in range(2)}
            self.device.submit(functools.partial(self.graphs.ensure, pairs, timed))
            self.device.synchronize()

    def _idle_inputs(self, buffers: StepBuffers) -> None:
        # Idle slots write their K/V into the last cache row, which no request reaches.
        buffers.inputs.zero_()
        buffers.inputs[:, POSITION] = self.max_model_len - 1
        buffers.sampling_floats[:, TOP_P] = 1.0

    # -- host side ---------------------------------------------------------------------
    def prepare(self, step: ScheduledStep) -> PreparedStep:
        """Fill the pinned host inputs of `step`'s parity. Touches no device memory."""
        parity = step.index % self._input_buffers
        results = step.index % self._result_buffers
        host = self.host[parity]
        ints = host.inputs.numpy()
        floats = ints[:, SAMPLING_FLOATS:].view(np.float32)
        ints[:, :SAMPLING_FLOATS] = (self.max_model_len - 1, 0, 0)
        floats[:] = (0.0, 1.0)
        for request in step.requests:
            p = request.params
            ints[request.slot, :SAMPLING_FLOATS] = (request.input_position, p.seed, p.top_k)
            floats[request.slot] = (p.temperature, p.top_p)
        if step.kind is StepKind.DECODE:
            return PreparedStep(step.kind, parity, results)
        prompts, segments, offset = host.prompt_ids.numpy(), [], 0
        for request in step.requests:
            prompts[offset : offset + len(request.prompt)] = request.prompt
            segments.append((request.slot, offset, len(request.prompt)))
            offset += len(request.prompt)
        return PreparedStep(step.kind, parity, results, tuple(segments), offset)

    def outputs(self, prepared: PreparedStep) -> tuple[list[int], list[float]]:
        """Host copy of a finished step's sampled tokens and margins, indexed by slot."""
        packed = self._host_outputs[prepared.results][:-1]
        return packed[:, TOKEN].tolist(), packed[:, MARGIN:].view(np.float32)[:, 0].tolist()

    def clock_stamps_ns(self, prepared: PreparedStep) -> tuple[int, int]:
        """Device clock (ns) at a finished timed step's first and last op."""
        start, end = self._host_outputs[prepared.results][-1].tolist()
        return start, end

    def start_clock(self) -> None:
        """Stamp the device clock where the device gets to now: the run's time origin."""
        self.device.submit(functools.partial(stamp_clock, self._clock))

    def clock_origin_ns(self) -> int:
        """The stamp of `start_clock`, once any later work has completed."""
        return int(self._clock[0])

    def launch(self, prepared: PreparedStep, timed: bool) -> None:
        """Enqueue the step's device work; `timed`: stamp its first and last op."""
        if self.graphs is not None and prepared.kind is StepKind.DECODE:
            replay = self.graphs.replay
            self.device.submit(functools.partial(replay, prepared.parity, prepared.results, timed))
        else:
            self.device.submit(functools.partial(self.execute, prepared, timed))

    # -- device side (runs inside Device.submit) ----------------------------------------
    @torch.inference_mode()
    def execute(self, prepared: PreparedStep, timed: bool = False) -> None:
        """The device work of one step, eagerly: inputs in, forward + sample, outputs out."""
        host = self.host[prepared.parity]
        stage_in(host.inputs, self.dev.inputs, self.dev.start_stamp if timed else None)
        if prepared.kind is StepKind.PREFILL:
            n = prepared.prompt_tokens
            copy_words(host.prompt_ids[:n], self.dev.prompt_ids[:n])
            for slot, offset, length in prepared.segments:
                self._prefill_forward(slot, offset, length)
        else:
            self._decode_forward()
        stage_out(self.dev.outputs, self.host[prepared.results].outputs, timed)

    def _graphed_decode(self, parity: int, results: int, timed: bool) -> None:
        """A decode step as the graphs capture it."""
        stage_in(self.host[parity].inputs, self.dev.inputs, self.dev.start_stamp if timed else None)
        self._decode_forward()
        stage_out(self.dev.outputs, self.host[results].outputs, timed)

    def _sampling(self, rows: slice) -> SamplingTensors:
        ints, floats = self.dev.inputs[rows], self.dev.sampling_floats[rows]
        return SamplingTensors(
            temperature=floats[:, TEMPERATURE],
            top_k=ints[:, TOP_K],
            top_p=floats[:, TOP_P],
            seed=ints[:, SEED],
            position=ints[:, POSITION] + 1,  # the sampled token's own position
        )

    def _store(self, rows: slice, tokens: torch.Tensor, margins: torch.Tensor) -> None:
        self.dev.tokens[rows].copy_(tokens)
        self.dev.margins[rows].copy_(margins)
        self.next_tokens[rows].copy_(tokens)

    def _decode_forward(self) -> None:
        positions = self.dev.inputs[:, POSITION]  # (S,)
        logits = self.model.decode(self.next_tokens, positions, self.cache)  # (S, V)
        tokens, margins = sample(logits, self._sampling(slice(None)), self.kernels)
        self._store(slice(None), tokens, margins)

    def _prefill_forward(self, slot: int, offset: int, length: int) -> None:
        prompt = self.dev.prompt_ids[offset : offset + length]  # (T,)
        logits = self.model.prefill(prompt, slot, self.cache)  # (1, V)
        rows = slice(slot, slot + 1)
        tokens, margins = sample(logits, self._sampling(rows), self.kernels)
        self._store(rows, tokens, margins)
        if self._feeds_placeholder:  # planted fault: the decode embeds a placeholder id
            self.next_tokens[rows].fill_(PLACEHOLDER_TOKEN)
