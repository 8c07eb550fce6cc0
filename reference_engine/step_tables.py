"""A step's packed input and output tables: what crosses between host and device per step.

Each direction is one table of int64 words, so it moves as one copy (one kernel on CUDA,
`kernels.host_io`). Inputs, per slot: position, seed, top_k, and (temperature, top_p) as
two fp32 in one word. Outputs, per slot: token; (top-2 margin, sampled token's logprob) as
two fp32; the `MAX_LOGPROBS` most likely token ids (int32 pairs) and their logprobs (fp32
pairs). The output table's last row carries the step's device clock stamps (start, end).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from reference_engine.request import MAX_LOGPROBS

# Input columns; SAMPLING_FLOATS holds two fp32: TEMPERATURE, TOP_P.
POSITION, SEED, TOP_K, SAMPLING_FLOATS = range(4)
TEMPERATURE, TOP_P = range(2)
INPUT_WORDS = 4
# Output columns; SCORES holds two fp32: MARGIN, LOGPROB.
TOKEN, SCORES = 0, 1
MARGIN, LOGPROB = range(2)
TOP_IDS = slice(2, 2 + MAX_LOGPROBS // 2)
TOP_LOGPROBS = slice(2 + MAX_LOGPROBS // 2, 2 + MAX_LOGPROBS)
OUTPUT_WORDS = 2 + MAX_LOGPROBS
# The clock stamps: the last two words of the table (stage_out writes the very last).
START, END = OUTPUT_WORDS - 2, OUTPUT_WORDS - 1


@dataclass
class StepBuffers:
    """One step's inputs and outputs, per slot (typed views of the packed tables).

    The device copy has fixed addresses (the decode graphs read them); host copies are
    pinned and double-buffered by step parity: preparing step N+1 never overwrites the
    inputs step N's copy still reads, and step N+1's results never land on step N's before
    the host post-processed them."""

    inputs: torch.Tensor  # (S, INPUT_WORDS) int64
    prompt_ids: torch.Tensor  # (P,) int64: the step's prompt chunks, packed
    outputs: torch.Tensor  # (S + 1, OUTPUT_WORDS) int64; last row: clock stamps

    @classmethod
    def allocate(cls, slots: int, prompt_capacity: int, make) -> StepBuffers:
        return cls(
            make((slots, INPUT_WORDS), torch.int64),
            make((prompt_capacity,), torch.int64),
            make((slots + 1, OUTPUT_WORDS), torch.int64),
        )

    @property
    def sampling_floats(self) -> torch.Tensor:
        """(S, 2) fp32: temperature, top_p."""
        return self.inputs[:, SAMPLING_FLOATS:].view(torch.float32)

    @property
    def tokens(self) -> torch.Tensor:
        return self.outputs[:-1, TOKEN]

    @property
    def scores(self) -> torch.Tensor:
        """(S, 2) fp32: top-2 margin, sampled token's logprob."""
        return self.outputs[:-1, SCORES : SCORES + 1].view(torch.float32)

    @property
    def top_ids(self) -> torch.Tensor:
        return self.outputs[:-1, TOP_IDS].view(torch.int32)

    @property
    def top_logprobs(self) -> torch.Tensor:
        return self.outputs[:-1, TOP_LOGPROBS].view(torch.float32)

    @property
    def start_stamp(self) -> torch.Tensor:
        return self.outputs[-1, START:END]  # (1,)


@dataclass(frozen=True)
class HostOutputs:
    """A finished step's results as the host reads them, indexed by slot (numpy views of
    a pinned output table: valid until the table's next step; one per step, as logprobs are
    read once). `logprob_table` is the table logprobs are read from: the same one, but for
    a planted fault."""

    table: np.ndarray  # (S + 1, OUTPUT_WORDS) int64
    logprob_table: np.ndarray | None = None

    @property
    def tokens(self) -> list[int]:
        return self.table[:-1, TOKEN].tolist()

    @property
    def margins(self) -> list[float]:
        return _floats(self.table[:-1, SCORES])[:, MARGIN].tolist()

    def logprob(self, slot: int) -> float:
        return self._logprob_rows[0][slot]

    def top_logprobs(self, slot: int, n: int) -> tuple[list[int], list[float]]:
        """The `n` most likely tokens' ids and logprobs, most likely first."""
        _, ids, values = self._logprob_rows
        return ids[slot][:n], values[slot][:n]

    @property
    def clock_stamps_ns(self) -> tuple[int, int]:
        start, end = self.table[-1, START : END + 1].tolist()
        return start, end

    @functools.cached_property
    def _logprob_rows(self) -> tuple[list[float], list[list[int]], list[list[float]]]:
        """Every slot's logprob, top ids and top logprobs, read from the table at once on
        the first call (one read a step, not three per row on the post-processing path)."""
        table = (self.table if self.logprob_table is None else self.logprob_table)[:-1]
        return (
            _floats(table[:, SCORES])[:, LOGPROB].tolist(),
            table[:, TOP_IDS].view(np.int32).tolist(),
            table[:, TOP_LOGPROBS].view(np.float32).tolist(),
        )


def _floats(words: np.ndarray) -> np.ndarray:
    """The two fp32 packed in each int64 word: shape (..., 2)."""
    return words[..., None].view(np.float32)
