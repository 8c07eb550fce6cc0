"""Runs the model on the device: static buffers, input preparation, prefill and decode."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference_engine.config import ModelConfig
from reference_engine.cuda_graph import DecodeGraph
from reference_engine.device import Device
from reference_engine.faults import Fault
from reference_engine.kv_cache import KVCache
from reference_engine.model import MoEDecoder
from reference_engine.sampler import SamplingTensors, sample
from reference_engine.scheduler import ScheduledStep, StepKind

# Columns of the per-slot input tables.
POSITION, SEED, TOP_K = range(3)
TEMPERATURE, TOP_P = range(2)
PLACEHOLDER_TOKEN = 0  # what planted fault PLACEHOLDER_TOKEN leaves for the first decode


@dataclass
class StepBuffers:
    """One step's inputs and outputs, per slot. The device copy has fixed addresses (the
    decode graph reads them); host copies are pinned and double-buffered by step parity:
    preparing step N+1 never overwrites the inputs step N's copy still reads, and step N+1's
    results never land on step N's before the host post-processed them."""

    slot_ints: torch.Tensor  # (S, 3) int64: position, seed, top_k
    slot_floats: torch.Tensor  # (S, 2) fp32: temperature, top_p
    prompt_ids: torch.Tensor  # (P,) int64: the prefill step's prompts, packed
    out_tokens: torch.Tensor  # (S,) int64
    out_margins: torch.Tensor  # (S,) fp32

    @classmethod
    def allocate(cls, slots: int, prompt_capacity: int, make) -> StepBuffers:
        return cls(
            make((slots, 3), torch.int64),
            make((slots, 2), torch.float32),
            make((prompt_capacity,), torch.int64),
            make((slots,), torch.int64),
            make((slots,), torch.float32),
        )


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
    directly; the host gets a copy through the pinned output buffers."""

    def __init__(
        self,
        config: ModelConfig,
        device: Device,
        num_slots: int,
        max_model_len: int,
        max_prefill_tokens: int,
        seed: int = 0,
        cuda_graphs: bool = True,
    ) -> None:
        self.config, self.device = config, device
        self.num_slots, self.max_model_len = num_slots, max_model_len
        dev, dtype = device.torch_device, device.dtype
        self.model = MoEDecoder.build(config, max_model_len, dev, dtype, seed)
        self.cache = KVCache(config, num_slots, max_model_len, dev, dtype)
        prompt_capacity = max(max_prefill_tokens, max_model_len)
        self.dev = StepBuffers.allocate(
            num_slots, prompt_capacity, lambda shape, dt: torch.zeros(shape, dtype=dt, device=dev)
        )
        self.next_tokens = torch.zeros(num_slots, dtype=torch.int64, device=dev)
        self.host = [StepBuffers.allocate(num_slots, prompt_capacity, device.pinned) for _ in "ab"]
        self._idle_inputs(self.dev)
        self.plant_faults(())
        self.graph = None
        if cuda_graphs and device.kind == "cuda":
            device.submit(self._capture)
            device.synchronize()

    def plant_faults(self, faults: tuple[Fault, ...]) -> None:
        """Set the planted faults of the next run (testing only; see reference_engine.faults)."""
        self._input_buffers = 1 if Fault.STALE_PINNED_BUFFER in faults else 2
        self._result_buffers = 1 if Fault.UNDERSIZED_RING in faults else 2
        self._feeds_placeholder = Fault.PLACEHOLDER_TOKEN in faults

    def _capture(self) -> None:
        with torch.inference_mode():
            self.graph = DecodeGraph(self._decode_forward)

    def _idle_inputs(self, buffers: StepBuffers) -> None:
        # Idle slots write their K/V into the last cache row, which no request reaches.
        buffers.slot_ints.zero_()
        buffers.slot_ints[:, POSITION] = self.max_model_len - 1
        buffers.slot_floats.zero_()
        buffers.slot_floats[:, TOP_P] = 1.0

    # -- host side ---------------------------------------------------------------------
    def prepare(self, step: ScheduledStep) -> PreparedStep:
        """Fill the pinned host inputs of `step`'s parity. Touches no device memory."""
        parity = step.index % self._input_buffers
        results = step.index % self._result_buffers
        host = self.host[parity]
        ints, floats = host.slot_ints.numpy(), host.slot_floats.numpy()
        ints[:, POSITION] = self.max_model_len - 1
        ints[:, SEED:] = 0
        floats[:, TEMPERATURE] = 0.0
        floats[:, TOP_P] = 1.0
        for request in step.requests:
            p = request.params
            ints[request.slot] = (request.input_position, p.seed, p.top_k)
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
        host = self.host[prepared.results]
        return host.out_tokens.tolist(), host.out_margins.tolist()

    # -- device side (runs inside Device.submit) ----------------------------------------
    @torch.inference_mode()
    def execute(self, prepared: PreparedStep) -> None:
        """The device work of one step: inputs in, forward + sample, outputs out."""
        host = self.host[prepared.parity]
        self.dev.slot_ints.copy_(host.slot_ints, non_blocking=True)
        self.dev.slot_floats.copy_(host.slot_floats, non_blocking=True)
        if prepared.kind is StepKind.PREFILL:
            n = prepared.prompt_tokens
            self.dev.prompt_ids[:n].copy_(host.prompt_ids[:n], non_blocking=True)
            for slot, offset, length in prepared.segments:
                self._prefill_forward(slot, offset, length)
        elif self.graph is not None:
            self.graph.replay()
        else:
            self._decode_forward()
        results = self.host[prepared.results]
        results.out_tokens.copy_(self.dev.out_tokens, non_blocking=True)
        results.out_margins.copy_(self.dev.out_margins, non_blocking=True)

    def _sampling(self, rows: slice) -> SamplingTensors:
        ints, floats = self.dev.slot_ints[rows], self.dev.slot_floats[rows]
        return SamplingTensors(
            temperature=floats[:, TEMPERATURE],
            top_k=ints[:, TOP_K],
            top_p=floats[:, TOP_P],
            seed=ints[:, SEED],
            position=ints[:, POSITION] + 1,  # the sampled token's own position
        )

    def _store(self, rows: slice, tokens: torch.Tensor, margins: torch.Tensor) -> None:
        self.dev.out_tokens[rows].copy_(tokens)
        self.dev.out_margins[rows].copy_(margins)
        self.next_tokens[rows].copy_(tokens)

    def _decode_forward(self) -> None:
        positions = self.dev.slot_ints[:, POSITION]  # (S,)
        logits = self.model.decode(self.next_tokens, positions, self.cache)  # (S, V)
        tokens, margins = sample(logits, self._sampling(slice(None)))
        self._store(slice(None), tokens, margins)

    def _prefill_forward(self, slot: int, offset: int, length: int) -> None:
        prompt = self.dev.prompt_ids[offset : offset + length]  # (T,)
        logits = self.model.prefill(prompt, slot, self.cache)  # (1, V)
        rows = slice(slot, slot + 1)
        tokens, margins = sample(logits, self._sampling(rows))
        self._store(rows, tokens, margins)
        if self._feeds_placeholder:  # planted fault: the decode embeds a placeholder id
            self.next_tokens[rows].fill_(PLACEHOLDER_TOKEN)
