"""`stepgap export --perfetto`: valid Chrome trace JSON whose step and gap events are the
run's tables, exactly."""

import gzip
import itertools
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.perfetto import DEVICE_PID, GAP_NAME, HOST_PID, perfetto_trace
from stepgap.runs import RunData

METADATA_NAMES = {
    "process_name": ("name", str),
    "thread_name": ("name", str),
    "process_sort_index": ("sort_index", int),
}


def invoke(*args):
    return CliRunner().invoke(app, ["export", *(str(a) for a in args)])


def check_chrome_trace(trace) -> list[dict]:
    """The JSON Object Format of the Trace Event Format, as far as this exporter uses it:
    complete events (ph X) and naming metadata (ph M). Returns the complete events."""
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    assert trace.get("displayTimeUnit", "ms") in ("ms", "ns")
    named: dict[tuple[int, int], set[str]] = {}
    complete = []
    for event in trace["traceEvents"]:
        assert event["ph"] in ("X", "M"), event
        assert type(event["pid"]) is int and type(event["tid"]) is int
        assert isinstance(event["name"], str) and event["name"]
        assert isinstance(event.get("args", {}), dict)
        if event["ph"] == "M":
            key, kind = METADATA_NAMES[event["name"]]
            assert type(event["args"][key]) is kind
            named.setdefault((event["pid"], event["tid"]), set()).add(event["name"])
        else:
            assert isinstance(event["cat"], str)
            assert type(event["ts"]) is float and type(event["dur"]) is float
            assert event["dur"] >= 0
            complete.append(event)
    for track in {(e["pid"], e["tid"]) for e in complete}:
        assert {"process_name", "thread_name"} <= named.get(track, set()), track
    return complete


@pytest.fixture(scope="module")
def exported(both_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("perfetto") / "sync.json"
    result = invoke(both_run / "sync", "--perfetto", out)
    assert result.exit_code == 0, result.output
    assert f"perfetto trace: {out}" in " ".join(result.stdout.split())
    return stepgap.load_run(both_run / "sync"), json.loads(out.read_text())


def test_export_is_a_valid_chrome_trace(exported):
    run, trace = exported
    events = check_chrome_trace(trace)
    assert {e["pid"] for e in events} == {DEVICE_PID, HOST_PID}
    assert trace["otherData"]["run"] == run.name and trace["otherData"]["notes"] == []


def test_step_events_are_the_steps_table(exported):
    run, trace = exported
    device = [e for e in check_chrome_trace(trace) if e["pid"] == DEVICE_PID]
    steps = [e for e in device if e["name"] != GAP_NAME]
    table = run.steps
    assert [e["args"]["step"] for e in steps] == table.step.tolist()
    assert [e["ts"] for e in steps] == table.device_start_us.tolist()
    assert [e["dur"] for e in steps] == table.busy_us.tolist()
    assert [e["name"] for e in steps] == table.kind.tolist()
    assert [e["args"]["batch_size"] for e in steps] == table.batch_size.tolist()


def test_gap_events_are_the_gaps_of_the_steps_table(exported):
    run, trace = exported
    gaps = [e for e in check_chrome_trace(trace) if e["name"] == GAP_NAME]
    table = run.steps.assign(previous_end=run.steps.device_end_us.shift(1))
    table = table[table.gap_before_us.notna()]
    assert len(gaps) == len(table) == len(run.steps) - 1
    assert [e["args"]["before_step"] for e in gaps] == table.step.tolist()
    assert [e["ts"] for e in gaps] == table.previous_end.tolist()
    assert [e["dur"] for e in gaps] == table.gap_before_us.tolist()
    assert [e["args"]["gap_wait_us"] for e in gaps[1:]] == table.gap_wait_us.iloc[1:].tolist()


def test_device_track_alternates_steps_and_gaps_without_overlap(exported):
    _, trace = exported
    device = sorted(
        (e for e in check_chrome_trace(trace) if e["pid"] == DEVICE_PID), key=lambda e: e["ts"]
    )
    for before, after in itertools.pairwise(device):
        assert (before["name"] == GAP_NAME) != (after["name"] == GAP_NAME)
        assert before["ts"] + before["dur"] == pytest.approx(after["ts"], abs=1e-6)


def test_host_events_are_the_phase_spans_on_the_device_clock(exported):
    run, trace = exported
    host = [e for e in check_chrome_trace(trace) if e["pid"] == HOST_PID]
    origin = run.meta["origin_host_us"]
    assert [e["name"] for e in host] == run.phases.phase.tolist()
    assert [e["ts"] for e in host] == (run.phases.start_us - origin).tolist()
    assert [e["dur"] for e in host] == (run.phases.end_us - run.phases.start_us).tolist()


def test_gzip_export_and_trace_without_host_phases(both_run, tmp_path):
    out = tmp_path / "overlap.json.gz"
    assert invoke(both_run / "overlap", "--perfetto", out).exit_code == 0
    check_chrome_trace(json.loads(gzip.decompress(out.read_bytes())))
    run = stepgap.load_run(both_run / "overlap")
    steps = run.steps[["step", "device_start_us", "device_end_us", "gap_before_us"]]
    trace = perfetto_trace(RunData({"mode": "trace"}, steps, pd.DataFrame()))
    events = check_chrome_trace(trace)
    assert {e["pid"] for e in events} == {DEVICE_PID}
    assert trace["otherData"]["notes"] == ["no phases.csv: host track left out"]


def test_bad_input_is_a_one_line_error(both_run, tmp_path):
    cases = [
        (invoke(both_run, "--perfetto", tmp_path / "x.json"), "is a group of 2 runs"),
        (invoke(tmp_path / "nope", "--perfetto", tmp_path / "x.json"), "does not exist"),
        (invoke(both_run / "sync", "--perfetto", both_run / "sync" / "steps.csv"), "run dir"),
        (invoke(both_run / "sync", "--perfetto", tmp_path), "is a directory"),
    ]
    for result, text in cases:
        assert result.exit_code == 2 and "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], lines
    assert (both_run / "sync" / "steps.csv").read_text().startswith("step,kind")
    assert invoke(both_run / "sync").exit_code == 2  # --perfetto is required


def test_every_track_nests_properly(exported):
    """The JSON importer of Perfetto needs the events of one track to be disjoint or
    nested, never partly overlapping."""
    _, trace = exported
    tracks: dict[tuple[int, int], list[dict]] = {}
    for event in check_chrome_trace(trace):
        tracks.setdefault((event["pid"], event["tid"]), []).append(event)
    for events in tracks.values():
        open_ends: list[float] = []
        for event in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"] + 1e-6:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1] + 1e-6, event
            open_ends.append(end)
