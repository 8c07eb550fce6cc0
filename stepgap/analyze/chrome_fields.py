"""What the Chrome reader takes from an event, and how a field is found in raw bytes.

Events are filed by category (`CLASSIFY`, searched in each event's raw bytes before any
decoding) and read column by column: one regex per field over a group of events, checked to
find the field exactly once per event. Identities (pid, tid, device, stream) become ints and
names small int codes, so the tables stay numeric.

Categories taken (complete events, `"ph": "X"`):
- device activity: `kernel`, `gpu_memcpy`, `gpu_memset` (Kineto), `Kernel`, `Memcpy`,
  `Memset` (older Kineto; Paddle's profiler) with `args.device`, `args.stream` and
  `args.correlation` (Paddle: `args["correlation id"]`);
- launching calls: `cuda_runtime`, `cuda_driver` (Kineto), `Runtime`, `Driver` (older),
  `CudaRuntime` (Paddle);
- host ranges: `user_annotation` (`record_function`, `ProfilerStep#N`), Paddle's
  `ProfileStep`, `UserDefined`, `PythonUserDefined`, and `ProfilerStep` ranges of older
  traces filed as `cpu_op` / `Operator`.
Paddle's profiler (FastDeploy runs on it) writes its Chrome events in
paddle/fluid/platform/profiler/chrometracing_logger.cc: names carry a display suffix
("ProfileStep#3[12.345 ms]") and threads a language tag ("1234(Python)", "1234(C++)").
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from stepgap.analyze.trace import OpKind

DEVICE_CATEGORIES = {
    "kernel": OpKind.KERNEL,
    "Kernel": OpKind.KERNEL,
    "gpu_memcpy": OpKind.MEMCPY,
    "Memcpy": OpKind.MEMCPY,
    "gpu_memset": OpKind.MEMSET,
    "Memset": OpKind.MEMSET,
}
OP_CODES = {kind: code for code, kind in enumerate(OpKind)}
CALL_CATEGORIES = {"cuda_runtime", "cuda_driver", "Runtime", "Driver", "CudaRuntime"}
RANGE_CATEGORIES = {"user_annotation", "ProfileStep", "UserDefined", "PythonUserDefined"}
LEGACY_RANGE_CATEGORIES = {"cpu_op", "Operator"}  # only their ProfilerStep ranges
LEGACY_RANGE_PREFIX = "ProfilerStep"
CLASSIFY = re.compile(
    rb'"cat"\s*:\s*"(kernel|gpu_memcpy|gpu_memset|cuda_runtime|cuda_driver|user_annotation'
    rb"|Kernel|Memcpy|Memset|Runtime|Driver|CudaRuntime|ProfileStep|UserDefined"
    rb'|PythonUserDefined)"|"ProfilerStep'
)
INT64_LIMIT = 2**62  # ids beyond this are not numbers any tool writes; treated as names
PADDLE_SUFFIX = re.compile(r"\[[0-9.]+ [mun]?s\]$")  # Paddle's "[12.345 ms]" display
_THREAD_TAG = re.compile(r"^(\d{1,18})\((?:Python|C\+\+)\)$")  # Paddle's "1234(Python)"

_NUMBER = rb"\s*:\s*(-?[0-9][0-9.eE+-]*)"
SINGLE = {
    name: re.compile(b'"' + name.encode() + b'"' + _NUMBER)
    for name in ("ts", "dur", "pid", "tid", "device", "stream", "correlation")
}


def _side_by_side(*keys: str, unread: tuple[str, ...] = ()) -> re.Pattern[bytes]:
    """Consecutive `"key": number` members in this order; `unread` ones are not captured."""
    members = [
        b'"' + key.encode() + b'"' + (rb"\s*:\s*-?\d+" if key in unread else _NUMBER)
        for key in keys
    ]
    return re.compile(rb"\s*,\s*".join(members))


# Kineto writes these fields side by side: one pass reads them all. A group in which such a
# run is not found once per event is read with the single-field patterns instead.
SIDE_BY_SIDE = [
    (("pid", "tid", "ts", "dur"), _side_by_side("pid", "tid", "ts", "dur")),
    (("ts", "dur"), _side_by_side("ts", "dur")),
    (
        ("device", "stream", "correlation"),
        _side_by_side("device", "context", "stream", "correlation", unread=("context",)),
    ),
]
PHASE = re.compile(rb'"ph"\s*:\s*"([^"\\]*)"')
NAME = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
OP_FIELDS = ("ts", "dur", "device", "stream", "correlation")
CALL_FIELDS = ("ts", "dur", "pid", "tid", "correlation")
RANGE_FIELDS = ("ts", "dur", "pid", "tid")


def find_fields(blob: bytes, count: int, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Each named field of every event in `blob` as a bytes array, or None unless each
    occurs exactly once per event."""
    found: dict[str, np.ndarray] = {}
    for covered, pattern in SIDE_BY_SIDE:
        if set(covered) <= set(names) and not set(covered) & set(found):
            values = pattern.findall(blob)
            if len(values) == count and count:
                table = np.array(values, dtype=bytes)
                found.update((name, table[:, i]) for i, name in enumerate(covered))
    for name in names:
        if name not in found:
            values = SINGLE[name].findall(blob)
            if len(values) != count:
                return None
            found[name] = np.array(values, dtype=bytes)
    return found


def correlation_of(args: dict) -> int:
    """A device op's or call's correlation id (Kineto `correlation`, Paddle `correlation id`);
    0 when absent or not a plausible id."""
    value = args.get("correlation", args.get("correlation id", 0))
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < INT64_LIMIT:
        return value
    return 0


def plain_name(name: Any) -> str:
    """An event's name without Paddle's duration display."""
    return PADDLE_SUFFIX.sub("", str(name))


class Identities:
    """pid / tid values as ints: numbers stay, other strings get stable negative ids."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def __call__(self, value: Any) -> int:
        if isinstance(value, int) and -INT64_LIMIT < value < INT64_LIMIT:
            return value
        if isinstance(value, float) and value.is_integer() and abs(value) < INT64_LIMIT:
            return int(value)
        text = str(value)
        digits = text.rsplit(" ", 1)[-1]
        if digits.isdigit() and len(digits) < 19:  # "stream 7" in older traces
            return int(digits)
        tagged = _THREAD_TAG.match(text)  # one OS thread, whichever language it ran
        if tagged:
            return int(tagged.group(1))
        return self.names.setdefault(text, -1 - len(self.names))


class Names:
    """Strings as small int codes (a trace repeats a few thousand names millions of times)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}  # plain name -> code
        self.seen: dict[str, int] = {}  # name as written -> code

    def encode(self, names: list) -> np.ndarray:
        seen = self.seen
        return np.fromiter(
            (seen[n] if n in seen else self._new(n) for n in names), np.int64, len(names)
        )

    def _new(self, name: Any) -> int:
        code = self.codes.setdefault(plain_name(name), len(self.codes))
        self.seen[name] = code
        return code

    def decode(self, codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=list(self.codes))
