"""Step identification and the per-step table, on traces whose answer is known."""

import pytest

from stepgap.analyze import STEP_COLUMNS, StepOptions, StepRule, TraceError, analyze_traces

from .conftest import VLLM_STEP, decode_loop


def test_decode_loop_table(loop_trace):
    path, _ = loop_trace
    result = analyze_traces([path])
    steps = result.steps
    assert list(steps.columns) == STEP_COLUMNS
    assert result.step_rule is StepRule.VLLM and "vLLM" in result.step_source
    # device start 10 µs into each range (the first range starts the clock at 0)
    assert list(steps.device_start_us) == [10.0, 115.0, 225.0, 340.0]
    assert list(steps.busy_us) == [53.0] * 4
    assert list(steps.gap_before_us.fillna(-1)) == [-1, 52.0, 57.0, 62.0]
    assert list(steps.overlap_before_us) == [0.0] * 4
    assert list(steps.idle_inside_us) == [6.0] * 4  # [12, 14] + [30, 33] + [60, 61]
    assert list(steps.kernels) == [2] * 4 and list(steps.memcpys) == [2] * 4
    assert set(steps.stream) == {"7"} and set(steps.kind) == {"decode"}
    assert list(steps.first_launch_us) == [1.0, 106.0, 216.0, 331.0]
    assert set(steps.launch_threads) == {"100"}
    summary = result.summary
    assert summary["gap_p50_us"] == 57.0 and summary["num_steps"] == 4
    assert summary["idle_fraction"] == pytest.approx(171 / (340 + 53 - 10))
    assert summary["idle_between_steps_us"] == 171.0 and summary["idle_inside_steps_us"] == 24.0
    assert summary["device_idle_total_us"] == 195.0 and summary["analysed_span_us"] == 383.0


def test_warmup_steps_leave_gap_stats_but_not_totals(loop_trace):
    path, _ = loop_trace
    summary = analyze_traces([path], warmup_steps=2).summary
    assert summary["gap_samples"] == 2 and summary["gap_p50_us"] == 59.5
    assert summary["gap_total_us"] == 52.0 + 57.0 + 62.0


def test_nested_matching_ranges_count_once(tmp_path):
    trace = decode_loop(steps=2)
    trace.range(VLLM_STEP, 1001.0, 20.0)  # inside the first step range
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert len(result.steps) == 2


def test_work_launched_by_another_thread_belongs_to_the_step_it_ran_in(tmp_path):
    """An autograd / forward / output thread: its launch falls in a step's time."""
    trace = decode_loop(steps=2)
    trace.launch(1020.0, 1070.0, 1080.0, tid=555)  # during step 0, from another thread
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    steps = result.steps
    assert steps.device_end_us.iloc[0] == 80.0 and steps.kernels.iloc[0] == 3
    assert steps.launch_threads.iloc[0] == "100+555" and result.unattributed_ops == 0
    assert [t["tid"] for t in result.traces[0]["launch_threads"]] == [100, 555]
    assert any("launched from 2 threads" in note for note in result.notes)


def test_a_step_whose_work_all_comes_from_another_thread_is_not_rejected(tmp_path, make_trace):
    trace = make_trace()
    for at in (0.0, 100.0):
        trace.range("step[DECODE bs=8]", at, 50.0, tid=1)  # scheduler thread
        trace.launch(at + 5, at + 10, at + 30, tid=2)  # forward thread
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert result.step_rule is StepRule.SGLANG and len(result.steps) == 2
    assert list(result.steps.gap_before_us.fillna(-1)) == [-1, 80.0]


def test_launches_outside_every_step_are_counted(tmp_path):
    trace = decode_loop(steps=2)
    trace.launch(900.0, 905.0, 906.0, tid=555)  # before the first step
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert result.unattributed_ops == 1 and "outside every step range" in result.notes[0]


def test_profiler_steps_come_before_forward_ranges(tmp_path, make_trace):
    """A training trace: a forward range per ProfilerStep is not a step (issue 14)."""
    trace = make_trace()
    for i in range(3):
        at = i * 1000.0
        trace.range(f"ProfilerStep#{i}", at, 900.0)
        trace.range("DistributedDataParallel.forward", at + 1, 100.0)
        trace.launch(at + 2, at + 10, at + 90)
        trace.launch(at + 300, at + 310, at + 800, tid=7)  # backward, autograd thread
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert result.step_rule is StepRule.PROFILER_STEP
    assert list(result.steps.gap_before_us.dropna()) == [210.0, 210.0]
    assert list(result.steps.kernels) == [2, 2, 2]


def test_engine_steps_inside_profiler_steps_are_the_steps(tmp_path, make_trace):
    """A profiler schedule stepping every 4 engine steps: the engine's steps win."""
    trace = make_trace()
    trace.range("ProfilerStep#0", 0.0, 1000.0)
    for i in range(8):
        at = i * 100.0
        trace.range("[Executor] _forward_step 7: 0 ctx reqs, 8 gen reqs", at, 50.0)
        trace.launch(at + 1, at + 10, at + 40)
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert result.step_rule is StepRule.TENSORRT_LLM and len(result.steps) == 8
    assert "split 1 ProfilerStep" in result.notes[-1]


def test_stepgap_ranges_name_stepgap_traces(tmp_path, make_trace):
    trace = make_trace()
    for i, at in enumerate((10.0, 200.0)):
        trace.range("stepgap/step", at, 150.0)
        trace.range("stepgap/launch", at + 1, 20.0)
        trace.launch(at + 2, at + 30, at + 40 + i)
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert result.step_rule is StepRule.STEPGAP and len(result.steps) == 2
    assert list(result.steps.busy_us) == [10.0, 11.0]


def test_profiler_steps_name_steps_when_nothing_else_does(tmp_path, make_trace):
    trace = make_trace()
    for i in range(3):
        trace.range(f"ProfilerStep#{i + 5}", i * 100.0, 90.0)
        trace.launch(i * 100.0 + 1, i * 100.0 + 10, i * 100.0 + 50)
    result = analyze_traces([trace.write(tmp_path / "t.json")])
    assert list(result.steps.range_name) == ["ProfilerStep#5", "ProfilerStep#6", "ProfilerStep#7"]
    assert list(result.steps.gap_before_us.dropna()) == [60.0, 60.0]


def test_overlapping_steps_have_gap_zero_and_an_overlap(tmp_path, make_trace):
    """Step 1 starts on stream 9 before step 0 ends on stream 7: never a negative gap."""
    trace = make_trace()
    trace.range(VLLM_STEP, 0.0, 50.0)
    trace.launch(1.0, 10.0, 100.0, stream=7)
    trace.range(VLLM_STEP, 60.0, 50.0)
    trace.launch(61.0, 70.0, 130.0, stream=9)
    trace.range(VLLM_STEP, 200.0, 50.0)
    trace.launch(201.0, 150.0 + 60.0, 240.0, stream=7)
    steps = analyze_traces([trace.write(tmp_path / "t.json")]).steps
    assert list(steps.gap_before_us.fillna(-1)) == [-1, 0.0, 80.0]
    assert list(steps.overlap_before_us) == [0.0, 30.0, 0.0]
    assert list(steps.idle_inside_us) == [0.0, 0.0, 0.0]
    separate = analyze_traces([tmp_path / "t.json"], StepOptions(streams="separate")).steps
    assert (separate.gap_before_us.dropna() >= 0).all()


def test_no_matching_range_lists_the_names_found(loop_trace):
    path, _ = loop_trace
    with pytest.raises(
        TraceError,
        match=r"no host range matches --range 'decode_step'.*"
        r"ranges found: execute_context_N\(N\)_generation_N\(N\) \(4\).*--split-idle-us",
    ):
        analyze_traces([path], StepOptions(range_pattern="decode_step"))


def test_ranges_without_device_work_inside_are_an_error(tmp_path, make_trace):
    trace = make_trace()
    trace.range(VLLM_STEP, 0.0, 10.0)
    trace.launch(50.0, 60.0, 70.0)  # after the range
    with pytest.raises(TraceError, match="no device work was launched inside them"):
        analyze_traces([trace.write(tmp_path / "t.json")])


def test_split_at_idle_gaps_finds_the_steps_without_ranges(tmp_path):
    trace = decode_loop()
    trace.events = [e for e in trace.events if e.get("cat") != "user_annotation"]
    result = analyze_traces([trace.write(tmp_path / "t.json")], StepOptions(split_idle_us=20))
    assert list(result.steps.gap_before_us.fillna(-1)) == [-1, 52.0, 57.0, 62.0]
    assert result.step_rule is StepRule.IDLE_SPLIT and "idle gaps > 20 us" in result.step_source
    finer = analyze_traces([tmp_path / "t.json"], StepOptions(split_idle_us=2.5))
    assert len(finer.steps) == 8  # the 3 µs stretch [30, 33] also splits each step


def test_event_marks_stretch_steps_to_the_events_the_device_reaches(tmp_path, make_trace):
    trace = make_trace()
    for at in (0.0, 200.0):
        trace.range(VLLM_STEP, at, 100.0)
        trace.call("cudaEventRecord", at + 1, dur=2)  # device idle: lands at the call's end
        trace.launch(at + 10, at + 20, at + 60)
        trace.call("cudaEventRecord", at + 12, dur=2)  # queued behind the kernel: at its end
    path = trace.write(tmp_path / "t.json")
    plain = analyze_traces([path]).steps
    marked = analyze_traces([path], StepOptions(event_marks=True)).steps
    assert list(plain.device_start_us) == [20.0, 220.0]
    assert list(marked.device_start_us) == [3.0, 203.0]
    assert list(marked.device_end_us) == [60.0, 260.0]
    assert list(marked.idle_inside_us) == [17.0, 17.0]


def test_streams_merged_or_separate(tmp_path):
    trace = decode_loop(steps=2)
    trace.launch(1004.0, 1020.0, 1070.0, kind="gpu_memset", stream=9)  # a side stream
    path = trace.write(tmp_path / "t.json")
    merged = analyze_traces([path]).steps
    separate = analyze_traces([path], StepOptions(streams="separate")).steps
    assert list(merged.stream) == ["7+9", "7"]
    assert list(merged.device_end_us) == [70.0, 168.0]
    assert list(separate.stream) == ["7", "7", "9"]
    assert separate.gap_before_us.isna().sum() == 2  # each stream's first step


def test_bad_options_are_trace_errors():
    with pytest.raises(TraceError, match="bad regex"):
        StepOptions(range_pattern="(")
    with pytest.raises(TraceError, match="merged or separate"):
        StepOptions(streams="both")
    with pytest.raises(TraceError, match="split-idle-us"):
        StepOptions(split_idle_us=0)
