"""Which host ranges are the steps: the known engines' step annotations, tried in order.

Each rule names the range one engine wraps around one step, as its source writes it:

- ProfilerStep#N — torch.profiler's `prof.step()` (a loop that calls it once per
  iteration: training loops, HF transformers' `generate` loops; transformers 5.24.0's
  generation/ has no record_function or NVTX range of its own, so its steps are the
  caller's ProfilerSteps) and Paddle's profiler, which FastDeploy runs on:
  `RecordEvent(name="ProfileStep#{}".format(step_num))` in python/paddle/profiler/
  profiler.py (PaddlePaddle/Paddle).
- vLLM — `Worker.annotate_profile` in vllm/v1/worker/gpu_worker.py wraps each
  `execute_model` in `execute_context_{n}({tokens})_generation_{n}({tokens})`
  (vllm-project/vllm, as mirrored at AndreasKaratzas/vllm@f2afd93 and
  ROCm/vllm@041dfa6); with `detailed_trace_annotation` (ROCm/vllm@041dfa6)
  `execute_{tokens}_context_{n}(sq..sk..)_generation_{n}(sq..sk..)`; older releases
  `execute_new_{n}_cached_{n}` (vllm-project/vllm@35d5cda).
- SGLang — `step[DECODE bs=N]`, `step[EXTEND bs=N toks=M]` (also MIXED, IDLE...):
  the per-step user_annotation of SGLang's torch-profiler traces, as trace tools that
  parse them document (AMD-AGI/TraceLens's split_inference_trace_annotation tests, issue
  #723). The literal was not found in the stored copy of sgl-project/sglang; its scheduler
  spans (`scheduler.run_batch`, ...) are in python/sglang/srt/utils/nvtx_utils.py.
- TensorRT-LLM — `PyExecutor._forward_step` in tensorrt_llm/_torch/pyexecutor/
  py_executor.py wraps each forward in the NVTX range `[Executor] _forward_step {iter}:
  {n} ctx reqs, {n} gen reqs` (older: no iteration number).
- stepgap — the reference engine launches step N's device work inside `stepgap/launch`
  (stepgap/instrument.py).

ProfilerStep#N comes first (it is one loop iteration in any program), unless a known
engine's annotation splits the ProfilerSteps — several engine steps inside each, as when a
profiler schedule steps every N engine steps — then the engine's steps are the steps.
`--range` overrides all of it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import pandas as pd

from stepgap.analyze.trace import TraceData, TraceError

SPLIT_FACTOR = 2  # engine steps per ProfilerStep from which the engine's steps are the steps


class StepRule(enum.StrEnum):
    """How the steps of an analysis were found."""

    PROFILER_STEP = "profiler_step"
    VLLM = "vllm"
    SGLANG = "sglang"
    TENSORRT_LLM = "tensorrt_llm"
    STEPGAP = "stepgap"
    RANGE = "range"  # the user's --range
    IDLE_SPLIT = "idle_split"  # --split-idle-us: the kernel timeline alone


@dataclass(frozen=True)
class Rule:
    rule: StepRule
    pattern: str
    label: str


KNOWN_RULES = (
    Rule(
        StepRule.PROFILER_STEP,
        r"^Profiler?Step#\d+$",
        "ProfilerStep#N (torch.profiler / Paddle profiler step)",
    ),
    Rule(
        StepRule.VLLM,
        r"^execute_(\d+_)?context_\d+\(.*\)_generation_\d+\(.*\)$|^execute_new_\d+_cached_\d+$",
        "vLLM execute_context_N(N)_generation_N(N)",
    ),
    Rule(StepRule.SGLANG, r"^step\[[A-Z_]+( \w+=\d+)*\]$", "SGLang step[MODE bs=N]"),
    Rule(
        StepRule.TENSORRT_LLM,
        r"^\[Executor\] _forward_step( \d+)?:",
        "TensorRT-LLM [Executor] _forward_step",
    ),
    Rule(StepRule.STEPGAP, r"^stepgap/launch$", "stepgap/launch (stepgap's engine)"),
)


@dataclass
class StepChoice:
    """The rule that names the steps, its ranges per rank, and why it was chosen."""

    rule: StepRule
    pattern: str
    label: str
    ranges: dict[int, pd.DataFrame]
    note: str = ""


def matching_ranges(ranges: pd.DataFrame, pattern: str) -> pd.DataFrame:
    """The ranges whose name matches `pattern`, outermost only, ordered by start."""
    regex = re.compile(pattern)
    names = ranges.name.cat.categories
    wanted = [i for i, name in enumerate(names) if regex.search(str(name))]
    chosen = ranges[ranges.name.cat.codes.isin(wanted)]
    chosen = chosen.sort_values(["pid", "tid", "start_us", "end_us"], ascending=[1, 1, 1, 0])
    # A range that starts before the ones earlier on its thread have ended is nested.
    reach = chosen.groupby(["pid", "tid"], sort=False).end_us.cummax()
    before = reach.groupby([chosen.pid, chosen.tid], sort=False).shift(1)
    outer = chosen[before.isna() | (chosen.start_us >= before)]
    return outer.sort_values("start_us", kind="stable").reset_index(drop=True)


def choose_steps(traces: list[TraceData], pattern: str | None) -> StepChoice:
    """The steps: `--range` if given, else the first known rule that matches (ProfilerStep
    giving way to an engine annotation that splits it); TraceError listing the range names
    found when nothing matches."""
    if pattern is not None:
        found = _found(traces, pattern)
        if found:
            return StepChoice(StepRule.RANGE, pattern, f"--range {pattern}", found)
        raise _no_match(traces, f"--range {pattern!r}")
    matches = [(rule, found) for rule in KNOWN_RULES if (found := _found(traces, rule.pattern))]
    if not matches:
        raise _no_match(traces, "any known step annotation")
    (rule, found), note = matches[0], ""
    if rule.rule is StepRule.PROFILER_STEP:
        (rule, found), note = _finer(matches)
    return StepChoice(rule.rule, rule.pattern, rule.label, found, note)


def _found(traces: list[TraceData], pattern: str) -> dict[int, pd.DataFrame]:
    found = {t.rank: matching_ranges(t.ranges, pattern) for t in traces}
    return found if any(len(f) for f in found.values()) else {}


def _finer(matches: list) -> tuple[tuple[Rule, dict], str]:
    """ProfilerStep, or an engine rule with several steps inside each ProfilerStep."""
    profiler = matches[0]
    count = sum(len(f) for f in profiler[1].values())
    for rule, found in matches[1:]:
        steps = sum(len(f) for f in found.values())
        if rule.rule is not StepRule.STEPGAP and steps >= SPLIT_FACTOR * count:
            note = (
                f"{steps} {rule.label} ranges split {count} ProfilerStep ranges: "
                "each engine step is a step"
            )
            return (rule, found), note
    return profiler, ""


def _no_match(traces: list[TraceData], wanted: str) -> TraceError:
    return TraceError(
        f"no host range matches {wanted}; {describe_range_names(traces)}. "
        "Pick the step range with --range REGEX, or split at idle gaps with --split-idle-us"
    )


def describe_range_names(traces: list[TraceData], limit: int = 12) -> str:
    """The range names a trace holds (numbers folded: ProfilerStep#N), most frequent first."""
    found = [t.ranges.name.astype(str) for t in traces if len(t.ranges)]
    if not found:
        return "the trace holds no host ranges (record_function / NVTX) at all"
    counts = fold_numbers(pd.concat(found)).value_counts()
    shown = ", ".join(f"{name} ({count})" for name, count in counts.head(limit).items())
    more = f", and {len(counts) - limit} more" if len(counts) > limit else ""
    return f"ranges found: {shown}{more}"


def fold_numbers(names: pd.Series) -> pd.Series:
    """Names with every number as N: one name per kind of range ("step[DECODE bs=N]")."""
    return names.astype(str).str.replace(r"\d+", "N", regex=True)
