"""Fuzzing the readers: no input makes them fail with anything but their own TraceError,
and on valid traces of any layout and chunking the streaming reader equals `json.load`."""

import gzip
import json
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepgap.analyze import TraceError, analyze_traces, read_trace
from stepgap.analyze import chunks as stream_module
from stepgap.analyze.chrome import ChromeColumns

from .conftest import LAYOUTS, KinetoTrace

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
SEED_TRACE = KinetoTrace()
SEED_TRACE.range("execute_context_0(0)_generation_1(1)", 0.0, 50.0)
SEED_TRACE.launch(1.0, 10.0, 20.0)
SEED_TEXT = SEED_TRACE.text("kineto").encode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
names = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


def read_or_trace_error(path):
    """Read and analyze; only TraceError may come out."""
    try:
        read_trace(path, 0)
        analyze_traces([path])
    except TraceError as error:
        assert str(error)  # a message, for the one-line CLI error


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "f.json"
    path.write_bytes(data)
    read_or_trace_error(path)


@FUZZ
@given(st.integers(0, len(SEED_TEXT)), st.binary(max_size=20), st.booleans())
def test_damaged_traces(tmp_path, cut, junk, zipped):
    """A real trace cut anywhere, with junk spliced in, plain or gzipped."""
    data = SEED_TEXT[:cut] + junk + SEED_TEXT[cut + len(junk) :]
    path = tmp_path / ("f.json.gz" if zipped else "f.json")
    path.write_bytes(gzip.compress(data) if zipped else data)
    read_or_trace_error(path)


@FUZZ
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), json_values)
def test_any_json_document(tmp_path, header, events):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({**header, "traceEvents": events}))
    read_or_trace_error(path)


event_fields = st.fixed_dictionaries(
    {
        "ph": st.sampled_from(["X", "X", "X", "i", "M"]),
        "cat": st.sampled_from(["kernel", "cuda_runtime", "user_annotation", "cpu_op", "ac2g"]),
        "name": names,
        "pid": st.integers(0, 5) | st.text(max_size=3),
        "tid": st.integers(0, 20),
        "ts": st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6),
        "dur": st.floats(0, 1e3, allow_nan=False) | st.integers(-5, 1000) | st.none(),
        "args": st.fixed_dictionaries(
            {"correlation": st.integers(0, 50), "device": st.integers(0, 2)},
            optional={"stream": st.integers(0, 20), "junk": json_values},
        )
        | json_values,
    }
)


@FUZZ
@given(
    st.lists(event_fields, max_size=30),
    st.sampled_from(LAYOUTS),
    st.integers(16, 3000),
)
def test_streaming_reader_equals_decoding_everything(tmp_path, events, layout, chunk):
    """Whatever the layout and however the file is chunked, the columns are those the
    event-by-event reader makes from `json.load` of the whole file."""
    trace = KinetoTrace()
    trace.events = events
    path = trace.write(tmp_path / "f.json", layout)
    reference = ChromeColumns()
    reference.add(json.loads(path.read_text())["traceEvents"])
    want = reference.tables(reference.first_ns() or 0)  # µs from the first event, as read
    original = stream_module.CHUNK_BYTES
    stream_module.CHUNK_BYTES = chunk
    try:
        got = read_trace(path, 0)
    finally:
        stream_module.CHUNK_BYTES = original
    for expected, actual in zip(want, (got.ranges, got.calls, got.ops), strict=True):
        assert len(expected) == len(actual)
        if len(expected):
            assert sorted(expected.start_us) == sorted(actual.start_us)
            assert sorted(expected.end_us) == sorted(actual.end_us)
    if len(want[0]):
        assert sorted(want[0].name.astype(str)) == sorted(got.ranges.name.astype(str))


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), json_values)))
def test_sqlite_files_of_any_tables(tmp_path, rows):
    path = tmp_path / "f.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
        db.execute(
            "CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start, end, deviceId, streamId, "
            "correlationId, globalPid)"
        )
        db.execute("CREATE TABLE NVTX_EVENTS (start, end, eventType, text, globalTid)")
        for text, number, value in rows:
            junk = json.dumps(value)
            db.execute(
                "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, ?, ?, ?, ?)",
                (number, junk, text, number, junk, number),
            )
            db.execute("INSERT INTO NVTX_EVENTS VALUES (?, ?, 59, ?, ?)", (0, number, text, junk))
    read_or_trace_error(path)
