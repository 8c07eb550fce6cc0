"""Why each gap happened: the wait before it and the host ranges its time went to."""

import numpy as np
import pandas as pd
import pytest

from stepgap.analyze import analyze_traces
from stepgap.analyze.causes import Segment, split_windows
from stepgap.analyze.intervals import Union, owner_at, owner_timeline

from .conftest import DATA, HF_FIXTURE

VLLM = DATA / "vllm_graph_sync.trace.json.gz"


def test_a_blocking_dtoh_copy_before_each_launch_is_named_the_cause():
    result = analyze_traces([VLLM])
    causes = result.causes
    top = causes["by_cause"][0]
    assert (top["wait"], top["wait_range"], top["after"]) == (
        "cudaMemcpyAsync (DtoH pageable)",
        "postprocess",
        "DtoH pageable copy",
    )
    assert top["gaps"] == 11 and top["share"] == pytest.approx(1.0)
    assert causes["headline"].startswith("100% of gap time follows cudaMemcpyAsync (DtoH pageable)")
    assert "inside `postprocess`" in causes["headline"]
    gaps = result.steps.gap_cause.iloc[1:]
    assert gaps.str.startswith("cudaMemcpyAsync (DtoH pageable) in postprocess").all()


def test_the_pieces_of_each_gap_add_up_to_it():
    result = analyze_traces([VLLM])
    pieces = result.gap_pieces.groupby("step").us.sum()
    gaps = result.steps.set_index("step").gap_before_us.dropna()
    assert np.allclose(pieces.reindex(gaps.index).to_numpy(), gaps.to_numpy(), atol=0.01)
    by_segment = result.causes["by_segment"]
    assert sum(by_segment.values()) == pytest.approx(result.summary["idle_between_steps_us"])
    # the host still blocked after the copy ended (a late wake-up), then postprocess ran
    assert by_segment[Segment.SYNC_WAIT] > 0 and by_segment[Segment.LAUNCH_LATENCY] > 0
    ranges = {r["range"] for r in result.causes["by_range"]}
    assert {"postprocess", "schedule", "execute_context_N(N)_generation_N(N)"} <= ranges


def test_work_queued_before_the_device_was_free_is_not_blamed_on_the_host():
    result = analyze_traces([DATA / "epoch_timestamps.trace.json.gz"])
    assert result.causes["headline"].startswith("100% of gap time was queued")
    assert set(result.gap_pieces.segment) == {Segment.QUEUED}


@pytest.mark.skipif(not HF_FIXTURE.exists(), reason="the H100 trace is not committed")
def test_hf_decode_loop_gaps_follow_its_token_copy():
    causes = analyze_traces([HF_FIXTURE]).causes
    assert causes["by_cause"][0]["wait"] == "cudaMemcpyAsync (DtoH pageable)"
    assert causes["by_cause"][0]["share"] == pytest.approx(1.0)


def test_split_windows_cuts_at_every_inner_time():
    windows = pd.DataFrame({"a": [0.0, 5.0, 9.0], "b": [10.0, 6.0, 9.0], "gap": [1, 2, 3]})
    pieces = split_windows(windows, np.array([2.0, 5.0, 7.0, 12.0]))
    assert list(zip(pieces.gap, pieces.a, pieces.b, strict=True)) == [
        (1, 0.0, 2.0),
        (1, 2.0, 5.0),
        (1, 5.0, 7.0),
        (1, 7.0, 10.0),
        (2, 5.0, 6.0),
    ]


def test_union_and_owners():
    union = Union.of([0, 5, 20, 25], [10, 8, 30, 26])
    assert union.length == 20.0
    assert list(union.covered([0, 9, -5, 15], [100, 22, 1, 18])) == [20.0, 3.0, 1.0, 0.0]
    timeline = owner_timeline([0, 1, 2, 10, 10], [10, 5, 3, 12, 10], [7, 8, 9, 10, 11])
    owners = owner_at(timeline, [0, 1.5, 2.5, 4, 6, 10, 11, 12, -1])
    assert list(owners) == [7, 8, 9, 8, 7, 10, 10, -1, -1]
