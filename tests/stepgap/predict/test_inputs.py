"""A sync run's tables as the replay's inputs: costs from the host phases and the device
steps, computed on a hand-built run, and the one-line errors of runs it cannot use."""

import math

import pandas as pd
import pytest

from reference_engine.scheduler import StepKind
from stepgap.predict.errors import PredictError
from stepgap.predict.inputs import load_sync_inputs
from stepgap.runs import RunData

PHASES = ("schedule", "prepare", "launch", "wait", "postprocess", "output")


def hand_built_run(mode="sync", complete=True, phases=True):
    """Two steps. Host (µs): step 0 schedule 0-10, prepare 10-40, launch 40-50, wait
    50-1050, postprocess 1050-1080, output 1080-1090; step 1 the same shifted by 1100.
    Device: step 0 60-1040, step 1 1190-2140 (gap 150)."""
    rows = []
    for step in (0, 1):
        t = 1100.0 * step
        bounds = [0, 10, 40, 50, 1050, 1080, 1090]
        rows += [(step, p, t + bounds[i], t + bounds[i + 1]) for i, p in enumerate(PHASES)]
    steps = pd.DataFrame(
        {
            "step": [0, 1],
            "kind": ["prefill", "decode"],
            "batch_size": [1, 1],
            "num_tokens": [4, 1],
            "decode_rows": [0, 1],
            "prefill_tokens": [4, 0],
            "chunks": [1, 0],
            "device_start_us": [60.0, 1190.0],
            "device_end_us": [1040.0, 2140.0],
            "busy_us": [980.0, 950.0],
            "gap_before_us": [math.nan, 150.0],
            "after_idle": [False, False],
        }
    )
    requests = pd.DataFrame(
        {
            "request_id": [0],
            "arrival_s": [0.0],
            "prompt_tokens": [4],
            "output_tokens": [2],
            "max_tokens": [2],
            "finish_reason": ["length"],
        }
    )
    meta = {
        "mode": mode,
        "complete": complete,
        "name": "hand-built",
        "config": {
            "engine": {"max_num_seqs": 1, "max_model_len": 16, "max_prefill_tokens": 64},
            "warmup_steps": 0,
        },
        "environment": {"device": {"kind": "cuda"}},
        "summary": {},
    }
    table = pd.DataFrame(rows, columns=["step", "phase", "start_us", "end_us"])
    return RunData(meta, steps, requests, phases=table if phases else None)


def test_costs_come_from_the_host_phases_and_the_device_steps():
    inputs = load_sync_inputs(hand_built_run())
    first, second = inputs.steps
    assert first.shape.kind is StepKind.PREFILL and second.shape.kind is StepKind.DECODE
    assert first.cost.prepare_host_us == 40  # schedule start -> launch start
    assert first.cost.launch_call_us == 10
    assert first.cost.finish_host_us == 1100 - 1050  # wait end -> next schedule start
    assert second.cost.finish_host_us == 1090 - 1050  # the last: wait end -> output end
    # the gap (150) less the host's finish (50) and prepare (40): 60 of launch latency
    assert second.cost.dispatch_us == 60
    assert first.cost.dispatch_us == 60  # the first step has no gap: the others' median
    assert [s.cost.device_busy_us for s in inputs.steps] == [980, 950]
    assert inputs.engine.max_num_seqs == 1 and inputs.engine.max_num_batched_tokens is None
    assert inputs.requests[0].stops_on_token is False


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (hand_built_run(mode="overlap"), "is an overlap run: predict reads a sync run"),
        (hand_built_run(complete=False), "is incomplete"),
        (hand_built_run(phases=False), "has no host phases (phases.csv missing)"),
    ],
)
def test_runs_it_cannot_use_are_one_line_errors(run, message):
    with pytest.raises(PredictError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sync_inputs(run)


def test_empty_phases_are_an_error():
    run = hand_built_run()
    run.phases = run.phases.iloc[:0]
    with pytest.raises(PredictError, match=r"phases.csv empty"):
        load_sync_inputs(run)
