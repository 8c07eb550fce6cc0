"""`build_report`: what the page holds, for good runs and for incomplete or partial ones."""

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import stepgap
from stepgap.report import build_report
from stepgap.report.style import MODE_COLOURS, run_styles
from stepgap.report.tables import ordered_by_mode
from stepgap.runs import RunData, RunError, save_run

SECTIONS = [
    "identity",
    "summary",
    "timeline",
    "gap-distribution",
    "gap-attribution",
    "latency",
    "throughput",
    "runs",
]
FIGURES = ("timeline", "gap-distribution", "gap-attribution", "latency", "throughput")


def embedded_images(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(s))) for s in sources]


@pytest.fixture(scope="module")
def pair(both_run):
    return ordered_by_mode(stepgap.load_runs(both_run))


def test_report_of_sync_and_overlap(pair, tmp_path):
    out = tmp_path / "report.html"
    info = build_report(pair, out)
    page = out.read_text()
    assert info.figures == FIGURES and not info.skipped and not info.warnings
    assert [run.mode for run in pair] == ["sync", "overlap"]
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    images = embedded_images(page)
    assert len(images) == len(FIGURES)
    assert all(image.size[0] > 1000 and image.size[1] > 300 for image in images)
    assert "tokens identical" in page and 'class="verdict ok"' in page
    sync, overlap = pair
    ratio = overlap.summary["gap_p50_us"] / sync.summary["gap_p50_us"]
    assert f"{ratio:,.3f}" in page
    assert sync.meta["environment"]["command"] in page
    assert not re.search(r"(src|href)=\"(https?:)?//|url\(", page)  # self-contained
    assert 'class="warnings"' not in page
    assert info.size_bytes == out.stat().st_size


def test_plots_dir_gets_png_and_svg_of_each_figure(pair, tmp_path):
    info = build_report(pair, tmp_path / "r.html", plots_dir=tmp_path / "plots")
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == sorted(f"{f}.{ext}" for f in FIGURES for ext in ("png", "svg"))
    assert len(info.plot_files) == 2 * len(FIGURES)
    for path in info.plot_files:
        if path.suffix == ".svg":
            assert ET.parse(path).getroot().tag.endswith("svg")
        else:
            assert Image.open(path).size[0] > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_report_replaces_an_existing_file_and_refuses_run_directories(pair, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old")
    build_report(pair, out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(RunError, match="is a run directory"):
        build_report(pair, pair[0].path / "report.html")
    with pytest.raises(RunError, match="is a directory"):
        build_report(pair, tmp_path)
    with pytest.raises(RunError, match="no runs"):
        build_report([], out)


def test_incomplete_run_is_reported_with_a_visible_warning(pair, tmp_path):
    sync, overlap = pair
    steps = overlap.steps.copy()
    steps.loc[steps.index[-3:], ["device_start_us", "device_end_us", "busy_us"]] = np.nan
    meta = {**overlap.meta, "complete": False, "incomplete_reason": "interrupted (Ctrl-C)"}
    partial = RunData(
        meta,
        steps,
        overlap.requests,
        overlap.tokens,
        overlap.margins,
        overlap.token_times,
        overlap.phases,
        overlap.path,
    )
    out = tmp_path / "r.html"
    info = build_report([sync, partial], out)
    assert any("incomplete (interrupted (Ctrl-C))" in w for w in info.warnings)
    page = out.read_text()
    assert 'class="warnings"' in page and "INCOMPLETE" in page
    assert len(embedded_images(page)) == len(FIGURES)


def test_runs_of_different_workloads_are_said_to_be(pair, tmp_path):
    sync, overlap = pair
    meta = {**overlap.meta, "workload": {**overlap.meta["workload"], "label": "other-mix"}}
    other = RunData(
        meta,
        overlap.steps,
        overlap.requests,
        overlap.tokens,
        overlap.margins,
        overlap.token_times,
        overlap.phases,
        overlap.path,
    )
    info = build_report([sync, other], tmp_path / "r.html")
    assert any("different workloads" in w for w in info.warnings)
    page = (tmp_path / "r.html").read_text()
    assert "smoke vs other-mix" in page and "ratios compare unlike things" in page


def analyzed_trace(run: RunData) -> RunData:
    """A run as a trace analyzer might write it: device steps only, no requests, tokens,
    host phases or attribution."""
    steps = run.steps[["step", "device_start_us", "device_end_us", "busy_us", "gap_before_us"]]
    meta = {
        "schema_version": 1,
        "name": "trace-engine",
        "mode": "trace",
        "complete": True,
        "source": "trace",
        "summary": {"gap_p50_us": 12.0},
    }
    return RunData(meta, steps.copy(), pd.DataFrame())


def test_analyzed_trace_renders_what_it_has_and_says_what_it_lacks(pair, tmp_path):
    trace = analyzed_trace(pair[0])
    info = build_report([trace, pair[1]], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert info.figures == FIGURES  # the overlap run still has every table
    assert any("trace-engine: no gap_<phase>_us columns" in s for s in info.skipped)
    assert any("trace-engine: no TPOT, TTFT, ITL data" in s for s in info.skipped)
    assert "no token ids recorded for trace-engine" in page
    alone = build_report([trace], tmp_path / "alone.html")
    assert alone.figures == ("timeline", "gap-distribution")
    page = (tmp_path / "alone.html").read_text()
    assert page.count("Not drawn:") == 3 and "One run: nothing to compare" in page


def test_saved_and_reloaded_trace_without_optional_files(pair, tmp_path):
    trace = analyzed_trace(pair[0])
    trace.requests = pd.DataFrame(columns=["request_id", "ttft_ms", "tpot_ms"])
    save_run(trace, tmp_path / "trace")
    info = build_report(stepgap.load_runs(tmp_path / "trace"), tmp_path / "r.html")
    assert "timeline" in info.figures and "latency" not in info.figures


def test_one_colour_per_mode_and_line_styles_for_repeats():
    styles = run_styles(["a", "b", "c", "d"], ["overlap", "sync", "overlap", "fancy"])
    assert styles["a"].colour == styles["c"].colour == MODE_COLOURS["overlap"]
    assert styles["b"].colour == MODE_COLOURS["sync"]
    assert styles["d"].colour not in MODE_COLOURS.values()
    assert styles["a"].line_style != styles["c"].line_style
