"""Runs the model on the device: input preparation, prefill chunks and decode."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reference_engine.config import ModelConfig
from reference_engine.cuda_graph import DecodeGraphs, GraphKey
from reference_engine.device import Device
from reference_engine.faults import Fault
from reference_engine.kernels import KernelBackend, default_backend
from reference_engine.kernels.host_io import copy_words, stage_in, stage_out, stamp_clock
from reference_engine.kv_cache import KVCache
from reference_engine.model import MoEDecoder
from reference_engine.parallel.group import SINGLE, TensorParallel
from reference_engine.sampler import SamplingTensors, sample
from reference_engine.scheduler import ScheduledStep, StepKind
from reference_engine.step_tables import (
    MAX_LOGPROBS,
    POSITION,
    SAMPLING_FLOATS,
    SEED,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    HostOutputs,
    StepBuffers,
)

PLACEHOLDER_TOKEN = 0  # what planted fault PLACEHOLDER_TOKEN leaves for the first decode


@dataclass(frozen=True)
class Segment:
    """One prompt chunk as the device runs it: `length` prompt ids at `offset` of the
    step's packed prompt table, into `slot`'s cache from position `start`."""

    slot: int
    offset: int
    length: int
    start: int
    last: bool  # the prompt's last chunk: sample the request's first token


@dataclass(frozen=True)
class PreparedStep:
    """What the device work of one step needs besides the buffers."""

    kind: StepKind
    parity: int  # which host buffers hold its inputs
    results: int  # which host buffers receive its outputs (the same parity, unless faulty)
    segments: tuple[Segment, ...] = ()
    prompt_tokens: int = 0


class ModelRunner:
    """Owns the model, KV cache and buffers; prepares inputs on the host, runs steps on the
    device. Sampled tokens stay on the device (`next_tokens`) and feed the next decode
    directly; the host gets a copy through the pinned output tables.

    Every step's first and last device op are the packed-table copies (`kernels.host_io`),
    which stamp the device clock: the step's device interval is exactly its own work. On
    CUDA a decode step is one graph replay of all of it; a mixed step replays the decode
    forward's graph, then runs its prompt chunks."""

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
        tp: TensorParallel = SINGLE,
    ) -> None:
        self.config, self.device = config, device
        self.num_slots, self.max_model_len = num_slots, max_model_len
        self.kernels = kernels or default_backend(device.kind)
        dev, dtype = device.torch_device, device.dtype
        self.model = MoEDecoder.build(config, max_model_len, dev, dtype, seed, tp)  # tp: a shard
        self.model.use_kernels(self.kernels)
        self.cache = KVCache(config, num_slots, max_model_len, dev, dtype, tp.size)
        prompt_capacity = max(max_prefill_tokens, max_model_len)
        self.dev = StepBuffers.allocate(
            num_slots, prompt_capacity, lambda shape, dt: torch.zeros(shape, dtype=dt, device=dev)
        )
        self.next_tokens = torch.zeros(num_slots, dtype=torch.int64, device=dev)
        self.host = [StepBuffers.allocate(num_slots, prompt_capacity, device.pinned) for _ in "ab"]
        self._output_tables = [b.outputs.numpy() for b in self.host]  # views of the pinned
        self._clock = device.pinned((1,), torch.int64)
        for buffers in (self.dev, *self.host):
            self._idle_inputs(buffers)
        self.plant_faults(())
        self.logprobs = False
        self.graphs = None
        if cuda_graphs and device.kind == "cuda":
            self.graphs = DecodeGraphs(self._graphed_decode)
            self.prepare_run(timed=True, logprobs=False)

    def plant_faults(self, faults: tuple[Fault, ...]) -> None:
        """Set the planted faults of the next run (testing only; see reference_engine.faults)."""
        self._input_buffers = 1 if Fault.STALE_PINNED_BUFFER in faults else 2
        self._result_buffers = 1 if Fault.UNDERSIZED_RING in faults else 2
        self._feeds_placeholder = Fault.PLACEHOLDER_TOKEN in faults
        self._chunk_shift = 1 if Fault.CHUNK_POSITION_OFF_BY_ONE in faults else 0
        self._logprobs_parity = 1 if Fault.LOGPROBS_OTHER_BUFFER in faults else 0

    def prepare_run(self, timed: bool, logprobs: bool, mixed_steps: bool = False) -> None:
        """Set what the next run's steps compute and capture the decode graphs it replays
        (run boundaries only: it syncs)."""
        self.logprobs = logprobs
        if self.graphs is not None:
            pairs = {(i % self._input_buffers, i % self._result_buffers) for i in range(2)}
            keys = [GraphKey(p, r, timed, logprobs) for p, r in sorted(pairs)]
            if mixed_steps:
                keys.append(self._rows_key())
            self.device.submit(functools.partial(self.graphs.ensure, keys))
            self.device.synchronize()

    def _rows_key(self) -> GraphKey:
        """The graph of a mixed step's decode rows: the forward alone, timed or not."""
        return GraphKey(None, None, False, self.logprobs)

    def _idle_inputs(self, buffers: StepBuffers) -> None:
        # Idle slots write their K/V into the last cache row, which no request reaches.
        buffers.inputs.zero_()
        buffers.inputs[:, POSITION] = self.max_model_len - 1
        buffers.sampling_floats[:, TOP_P] = 1.0

    # -- host side ---------------------------------------------------------------------
    def prepare(self, step: ScheduledStep) -> PreparedStep:
        """Fill the pinned host inputs of `step`'s parity. Touches no device memory.

        Decode rows get their input position; a slot with a prompt chunk stays idle for
        the decode forward (its chunk runs with its own positions) but gets its sampling
        parameters, for the first token its last chunk samples."""
        parity, results = step.index % self._input_buffers, step.index % self._result_buffers
        host = self.host[parity]
        ints = host.inputs.numpy()
        floats = ints[:, SAMPLING_FLOATS:].view(np.float32)
        ints[:, :SAMPLING_FLOATS] = (self.max_model_len - 1, 0, 0)
        floats[:] = (0.0, 1.0)
        for request in (*step.decodes, *(c.request for c in step.chunks)):
            p = request.params
            ints[request.slot, SEED:SAMPLING_FLOATS] = (p.seed, p.top_k)
            floats[request.slot] = (p.temperature, p.top_p)
        for request in step.decodes:
            ints[request.slot, POSITION] = request.input_position
        segments, offset = self._pack_chunks(step, host.prompt_ids.numpy())
        return PreparedStep(step.kind, parity, results, segments, offset)

    def _pack_chunks(self, step: ScheduledStep, prompts: np.ndarray):
        segments, offset = [], 0
        for chunk in step.chunks:
            ids = chunk.request.prompt[chunk.start : chunk.start + chunk.length]
            prompts[offset : offset + chunk.length] = ids
            start = chunk.start + (self._chunk_shift if chunk.start else 0)  # (planted fault)
            segments.append(Segment(chunk.request.slot, offset, chunk.length, start, chunk.last))  # type: ignore[arg-type]
            offset += chunk.length
        return tuple(segments), offset

    def outputs(self, prepared: PreparedStep) -> HostOutputs:
        """Host copy of a finished step's results, indexed by slot. (Planted fault
        LOGPROBS_OTHER_BUFFER reads the logprobs of the other step's table.)"""
        tables = self._output_tables
        other = tables[prepared.results ^ 1] if self._logprobs_parity else None
        return HostOutputs(tables[prepared.results], logprob_table=other)

    def start_clock(self) -> None:
        """Stamp the device clock where the device gets to now: the run's time origin."""
        self.device.submit(functools.partial(stamp_clock, self._clock))

    def clock_origin_ns(self) -> int:
        """The stamp of `start_clock`, once any later work has completed."""
        return int(self._clock[0])

    def launch(self, prepared: PreparedStep, timed: bool) -> None:
        """Enqueue the step's device work; `timed`: stamp its first and last op."""
        if self.graphs is not None and prepared.kind is StepKind.DECODE:
            key = GraphKey(prepared.parity, prepared.results, timed, self.logprobs)
            self.device.submit(functools.partial(self.graphs.replay, key))
        else:
            self.device.submit(functools.partial(self.execute, prepared, timed))

    # -- tensor-parallel hooks: no-ops here (parallel.leader.LeaderRunner on rank 0) ------
    def finish_run(self, output: Any) -> None:
        """After a run's drain (TP: the other ranks' step tables into `output.ranks`)."""

    def failure(self, error: Exception, output: Any) -> Exception | None:
        """What a run that raised `error` ends with instead (TP: a rank's one-line reason)."""
        return None

    def close(self) -> None:
        """Release what the runner started (TP: the other ranks)."""

    # -- device side (runs inside Device.submit) ----------------------------------------
    @torch.inference_mode()
    def execute(self, prepared: PreparedStep, timed: bool = False) -> None:
        """The device work of one step, eagerly but for the decode rows' graph: inputs in,
        decode rows (all slots; chunk slots idle), then each prompt chunk, outputs out."""
        host = self.host[prepared.parity]
        stage_in(host.inputs, self.dev.inputs, self.dev.start_stamp if timed else None)
        if prepared.kind is not StepKind.PREFILL:
            self._decode_rows()
        n = prepared.prompt_tokens
        if n:
            copy_words(host.prompt_ids[:n], self.dev.prompt_ids[:n])
        for segment in prepared.segments:
            self._prefill_chunk(segment)
        stage_out(self.dev.outputs, self.host[prepared.results].outputs, timed)

    def _decode_rows(self) -> None:
        if self.graphs is not None:
            self.graphs.replay(self._rows_key())
        else:
            self._decode_forward()

    def _graphed_decode(self, key: GraphKey) -> None:
        """A decode step as the graphs capture it (without the copies: the decode rows)."""
        timed, logprobs = key.timed, key.logprobs
        if key.parity is None:
            self._decode_forward(logprobs)
            return
        stamp = self.dev.start_stamp if timed else None
        stage_in(self.host[key.parity].inputs, self.dev.inputs, stamp)
        self._decode_forward(logprobs)
        stage_out(self.dev.outputs, self.host[key.results].outputs, timed)  # type: ignore[index]

    def _sampling(self, rows: slice, position: torch.Tensor) -> SamplingTensors:
        ints, floats = self.dev.inputs[rows], self.dev.sampling_floats[rows]
        return SamplingTensors(
            temperature=floats[:, TEMPERATURE],
            top_k=ints[:, TOP_K],
            top_p=floats[:, TOP_P],
            seed=ints[:, SEED],
            position=position,  # the sampled token's own position
        )

    def _sample_and_store(self, logits, rows: slice, position, logprobs: bool) -> None:
        tokens, margins = sample(logits, self._sampling(rows, position), self.kernels)
        self.dev.tokens[rows].copy_(tokens)
        self.dev.scores[rows, 0].copy_(margins)
        self.next_tokens[rows].copy_(tokens)
        if logprobs:
            self._store_logprobs(logits, tokens, rows)

    def _store_logprobs(self, logits: torch.Tensor, tokens: torch.Tensor, rows: slice) -> None:
        """Logprobs of the raw logits (before temperature, as vLLM returns them by default):
        the sampled token's and the MAX_LOGPROBS most likely ones'."""
        normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)  # (N, 1)
        self.dev.scores[rows, 1].copy_((logits.gather(1, tokens[:, None]) - normaliser)[:, 0])
        top_values, top_ids = logits.topk(min(MAX_LOGPROBS, logits.shape[-1]), dim=-1)
        self.dev.top_ids[rows, : top_ids.shape[1]].copy_(top_ids)
        self.dev.top_logprobs[rows, : top_ids.shape[1]].copy_(top_values - normaliser)

    def _decode_forward(self, logprobs: bool | None = None) -> None:
        positions = self.dev.inputs[:, POSITION]  # (S,)
        logits = self.model.decode(self.next_tokens, positions, self.cache)  # (S, V)
        logprobs = self.logprobs if logprobs is None else logprobs
        self._sample_and_store(logits, slice(None), positions + 1, logprobs)

    def _prefill_chunk(self, segment: Segment) -> None:
        ids = self.dev.prompt_ids[segment.offset : segment.offset + segment.length]  # (T,)
        # a chunk before the prompt's last only fills the cache: no LM head (on every rank)
        logits = self.model.prefill(ids, segment.slot, segment.start, self.cache, segment.last)
        if logits is None:  # (1, V) for the last chunk
            return
        rows = slice(segment.slot, segment.slot + 1)
        position = torch.full((1,), segment.start + segment.length, device=logits.device)
        self._sample_and_store(logits, rows, position, self.logprobs)
        if self._feeds_placeholder:  # planted fault: the decode embeds a placeholder id
            self.next_tokens[rows].fill_(PLACEHOLDER_TOKEN)
