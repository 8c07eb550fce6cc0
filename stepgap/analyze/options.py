"""How steps are found and measured: the analysis's options, checked on construction."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from stepgap.analyze.trace import TraceError


class StreamMode(enum.StrEnum):
    """Whether a step's device interval spans all streams or each stream has its own."""

    MERGED = "merged"
    SEPARATE = "separate"


STREAM_MODES = tuple(m.value for m in StreamMode)


@dataclass(frozen=True)
class StepOptions:
    """How steps are found and measured.

    `range_pattern`: regex for the step ranges (None: the known step rules, `rules`).
    `split_idle_us`: split the device timeline at idle gaps longer than this instead.
    `streams`: "merged" (one row per rank, device and step) or "separate" (per stream too).
    `event_marks`: also count each cudaEventRecord inside a step range as a zero-length
    mark on the device, at max(the call's end, the end of the work queued before it) —
    what a CUDA-event step timer such as stepgap's own measures.
    """

    range_pattern: str | None = None
    split_idle_us: float | None = None
    streams: StreamMode | str = StreamMode.MERGED
    event_marks: bool = False

    def __post_init__(self) -> None:
        if self.streams not in STREAM_MODES:
            raise TraceError(f"streams must be merged or separate, got {self.streams!r}")
        object.__setattr__(self, "streams", StreamMode(self.streams))
        if self.split_idle_us is not None and not self.split_idle_us > 0:
            raise TraceError(f"--split-idle-us must be > 0, got {self.split_idle_us}")
        if self.range_pattern is not None:
            try:
                re.compile(self.range_pattern)
            except re.error as error:
                raise TraceError(f"--range {self.range_pattern!r}: bad regex ({error})") from None

    @property
    def group_keys(self) -> list[str]:
        """What one step row is per: rank and device (and stream, when separate)."""
        return ["rank", "device"] + (["stream"] if self.streams is StreamMode.SEPARATE else [])
