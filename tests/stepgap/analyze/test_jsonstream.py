"""The streaming reader yields exactly the events `json.load` sees, whatever the layout."""

import gzip
import json

import pytest

from stepgap.analyze import chunks
from stepgap.analyze.chrome_fields import CLASSIFY
from stepgap.analyze.jsonstream import EventStream, decode_pieces
from stepgap.analyze.trace import TraceError

from .conftest import LAYOUTS, decode_loop


def streamed(path, monkeypatch=None, chunk=None):
    """Every event the stream hands over (kept pieces decoded), and the stream."""
    if chunk is not None:
        monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(chunks, "RAW_BYTES", max(16, chunk // 4))
    stream = EventStream(path, CLASSIFY)
    events = []
    for batch in stream:
        for pieces in batch.pieces.values():
            events += decode_pieces(pieces, path)
        events += batch.events
    return events, stream


def wanted(events):
    """The events CLASSIFY keeps (the categories the Chrome reader reads)."""
    cats = {"kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime", "user_annotation"}
    return [e for e in events if e.get("cat") in cats]


def key(event):
    return json.dumps(event, sort_keys=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk", [None, 64, 997])
def test_stream_keeps_exactly_the_wanted_events(tmp_path, monkeypatch, layout, chunk):
    trace = decode_loop(steps=6)
    path = trace.write(tmp_path / f"t-{layout}.json", layout)
    events, stream = streamed(path, monkeypatch, chunk)
    expected = wanted(json.loads(path.read_text())["traceEvents"])
    assert sorted(map(key, wanted(events))) == sorted(map(key, expected))
    assert stream.header["deviceProperties"] == [{"id": 0, "name": "GPU-X"}]
    assert stream.header["traceName"] == "test"  # a key after the events array


def test_kineto_layout_learns_a_trusted_separator(tmp_path):
    path = decode_loop().write(tmp_path / "t.json", "kineto")
    _, stream = streamed(path)
    assert stream.separator == b"},\n  {" and stream.exact_fallbacks == 0


def test_a_separator_inside_a_string_is_caught_and_read_exactly(tmp_path, monkeypatch):
    trace = decode_loop(steps=3)
    trace.range('tricky},{"name": "x', 1001, 1)  # the minified separator, in a name
    trace.events[-1]["args"] = {"nested": [{"a": 1}, {"b": 2}]}  # and in nested objects
    path = trace.write(tmp_path / "t.json", "minified")
    events, stream = streamed(path, monkeypatch, chunk=10_000)
    assert stream.exact_fallbacks >= 1
    expected = wanted(json.loads(path.read_text())["traceEvents"])
    assert sorted(map(key, wanted(events))) == sorted(map(key, expected))


def test_a_bare_event_array_is_a_trace(tmp_path):
    events = decode_loop(steps=2).events
    path = tmp_path / "array.json"
    path.write_text(json.dumps(events, indent=1))
    got, stream = streamed(path)
    assert sorted(map(key, wanted(got))) == sorted(map(key, wanted(events)))
    assert stream.header == {}


def test_gzip_in_several_members_reads_as_one_file(tmp_path):
    text = decode_loop().text("kineto").encode()
    path = tmp_path / "multi.json.gz"
    path.write_bytes(gzip.compress(text[:500]) + gzip.compress(text[500:]))
    got, _ = streamed(path)
    assert len(wanted(got)) == len(wanted(json.loads(text)["traceEvents"]))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"traceEvents": [{"ph": "X"}, {"ph": ', "truncated"),
        (b'{"traceEvents": [{"ph": "X"} {"ph": "X"}]}', "invalid JSON"),
        (b'{"schemaVersion": 1}', "no traceEvents"),
        (b'{"traceEvents": [1, 2]}', "not an event object"),
        (b'{"traceEvents": []} trailing', "extra data"),
        (b'{"a": tru', "truncated"),
        (b'{"a": 1 "b": 2}', "invalid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"<html></html>", "not a JSON trace"),
    ],
)
def test_bad_json_raises_one_trace_error_naming_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=problem):
        streamed(path)


def test_truncated_gzip_is_reported_as_such(tmp_path):
    data = gzip.compress(decode_loop().text().encode())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match="truncated gzip"):
        streamed(path)


def test_corrupt_gzip_is_reported_as_such(tmp_path):
    data = bytearray(gzip.compress(decode_loop().text().encode()))
    data[30:40] = b"\x00" * 10
    path = tmp_path / "corrupt.json.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="gzip"):
        streamed(path)
