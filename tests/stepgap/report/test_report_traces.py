"""Reports of analyzed traces (`stepgap analyze` of the committed fixtures): every rank and
stream on its own, no negative gap anywhere, the three idle figures and why the gaps
happened — each number checked against an independent computation from steps.csv and
run.json with plain pandas and json."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import stepgap
from stepgap.cli import app
from stepgap.report import build_report, data
from stepgap.report.plots import MAX_LANES_PER_RUN, timeline_plot
from stepgap.report.style import run_styles
from stepgap.runs import RunData

DATA = Path(__file__).resolve().parents[2] / "data" / "analyze"
VLLM = DATA / "vllm_graph_sync.trace.json.gz"  # a blocking DtoH sync before each launch
SGLANG = DATA / "sglang_overlap.trace.json.gz"  # overlapping steps on two streams
ENGINE_SECTIONS = [  # an engine run's report: the sections it always had, in order
    "headline",
    "identity",
    "summary",
    "predicted",
    "timeline",
    "gap-distribution",
    "gap-attribution",
    "latency",
    "throughput",
    "runs",
]
TOLERANCE_US = 0.002  # the page prints µs to the ns: 0.0005 of rounding, and sums of it
SIGNED = re.compile(r"(?<![\w-])[-−]\s?\d")  # a negative number (not a date: 2026-11-30)


def analyze(out: Path, *args) -> Path:
    result = CliRunner().invoke(app, ["analyze", *map(str, args), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Three analyzed runs: two ranks (the vLLM- and SGLang-style traces) with streams
    separate (three groups); the SGLang trace with streams merged (overlapping steps);
    the vLLM trace alone."""
    root = tmp_path_factory.mktemp("traces")
    ranks = ("--streams", "separate", "--range", r"^(execute_context_|step\[)")
    return {
        "groups": analyze(root / "groups", VLLM, SGLANG, *ranks),
        "overlap": analyze(root / "overlap", SGLANG),
        "vllm": analyze(root / "vllm", VLLM),
    }


@pytest.fixture(scope="module")
def pages(runs, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Each run's report (page text and its --plots-dir), made through the CLI."""
    root = tmp_path_factory.mktemp("pages")
    out = {}
    for name, run in runs.items():
        page, plots = root / f"{name}.html", root / f"{name}-plots"
        result = CliRunner().invoke(
            app, ["report", str(run), "-o", str(page), "--plots-dir", str(plots)]
        )
        assert result.exit_code == 0, result.output
        out[name] = (page.read_text(), plots)
    return out


def section(page: str, anchor: str) -> str:
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert found, f"no section {anchor}"
    return found.group(1)


def tables(html_text: str) -> list[pd.DataFrame]:
    return pd.read_html(io.StringIO(html_text), thousands=",")


def number(cell) -> float:
    return float(str(cell).replace(",", "").replace("%", "").strip())


def independent_groups(run: Path, keys: list[str]) -> pd.DataFrame:
    """Per group, from steps.csv with plain pandas: steps, gaps and their statistics, the
    idle sums and the span."""
    steps = pd.read_csv(run / "steps.csv")
    rows = []
    for key, g in steps.groupby(keys):
        gaps = g.gap_before_us.dropna()
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "steps": len(g),
                "gaps": len(gaps),
                "p50": gaps.median(),
                "mean": gaps.mean(),
                "max": gaps.max(),
                "between": g.gap_before_us.sum(),
                "inside": g.idle_inside_us.sum(),
                "span": g.device_end_us.max() - g.device_start_us.min(),
                "overlap": g.overlap_before_us.sum(),
            }
        )
    return pd.DataFrame(rows)


def test_each_rank_and_stream_is_its_own_group_with_its_own_figures(runs, pages):
    page, _ = pages["groups"]
    expected = independent_groups(runs["groups"], ["rank", "device", "stream"])
    assert len(expected) == 3  # rank 0 stream 7; rank 1 streams 7 and 9
    meta = json.loads((runs["groups"] / "run.json").read_text())
    totals = {(g["rank"], g["stream"]): g["device_idle_total_us"] for g in meta["groups"]}
    [shown] = tables(section(page, "groups"))
    assert len(shown) == 3
    for _, want in expected.iterrows():
        row = shown[(shown["rank"] == want["rank"]) & (shown["stream"] == want["stream"])]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["steps"] == want["steps"] and row["gaps counted"] == want["gaps"]
        pairs = {
            "gap p50 (µs)": want["p50"],
            "gap mean (µs)": want["mean"],
            "gap max (µs)": want["max"],
            "idle between steps (µs)": want["between"],
            "idle inside steps (µs)": want["inside"],
            "analysed span (µs)": want["span"],
            "overlap (µs)": want["overlap"],
            # no device work ran between these fixtures' steps: total = between + inside
            "total device idle (µs)": want["between"] + want["inside"],
        }
        for column, value in pairs.items():
            assert number(row[column]) == pytest.approx(value, abs=TOLERANCE_US), column
        key = (want["rank"], want["stream"])
        assert number(row["total device idle (µs)"]) == pytest.approx(totals[key], abs=0.001)
    assert "3 rank/stream groups" in page  # the run's legend entry


def test_timeline_lanes_and_gap_lines_per_group_with_the_rows_own_gaps(runs):
    run = stepgap.load_run(runs["groups"])
    groups = data.step_groups(run)
    assert [g.name for g in groups] == [
        "rank 0 · stream 7",
        "rank 1 · stream 7",
        "rank 1 · stream 9",
    ]
    steps = pd.read_csv(runs["groups"] / "steps.csv")
    for group in groups:
        mine = steps[
            (steps["rank"] == group.key["rank"]) & (steps["stream"] == group.key["stream"])
        ]
        window = data.timeline_window(group.steps, data.warmup_steps(run))
        assert len(window) == min(len(mine), data.TIMELINE_STEPS)
        rows = mine.set_index("step").loc[window.step]
        assert window.gap_before_us.iloc[1:].tolist() == rows.gap_before_us.iloc[1:].tolist()
        assert (window.gap_before_us.dropna() >= 0).all() and window.start_us.iloc[0] == 0
        gaps = data.group_gap_values(group.steps, 0)
        assert sorted(gaps) == sorted(mine.gap_before_us.dropna())
    # pooled, they are the summary's gaps
    assert (
        len(data.gap_values(run))
        == json.loads((runs["groups"] / "run.json").read_text())["summary"]["gap_samples"]
    )
    labels = ["two-rank"]
    plot = timeline_plot(list(zip(labels, [run], strict=True)), run_styles(labels, [run.mode]))
    assert plot.figure is not None and not plot.notes
    assert "Each lane has its own window" in plot.caption


def svg_text(path: Path) -> list[str]:
    return [el.text or "" for el in ET.parse(path).getroot().iter() if el.tag.endswith("text")]


@pytest.mark.parametrize("name", ["groups", "overlap", "vllm"])
def test_no_negative_gap_anywhere_in_the_page_or_its_figures(pages, name):
    page, plots = pages[name]
    text = re.sub(r"<img [^>]*>", "", page)
    text = re.sub(r'<section id="runs">.*?</section>', "", text, flags=re.S)  # paths, command
    text = re.sub(r"<style>.*?</style>", "", text, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    assert not SIGNED.findall(text)
    for figure in ("timeline", "gap-distribution"):
        labels = " | ".join(svg_text(plots / f"{figure}.svg"))
        assert "mean gap" in labels or figure != "timeline"
        assert not SIGNED.findall(labels), labels


def test_overlapping_steps_are_hatched_with_no_gap(pages, runs):
    page, plots = pages["overlap"]
    steps = pd.read_csv(runs["overlap"] / "steps.csv")
    overlapping = steps[steps.overlap_before_us > 0]
    assert len(overlapping) == 8 and (overlapping.gap_before_us == 0).all()
    labels = " | ".join(svg_text(plots / "timeline.svg"))
    assert "overlap: beside the step before (no gap)" in labels
    assert f"overlap: {len(overlapping)} steps" in labels
    assert "Hatched: a step running beside the steps before it" in page
    assert '<section id="groups">' not in page  # one group (streams merged): no group table


def test_three_idle_figures_named_plainly_with_their_numbers(pages, runs):
    for name in ("groups", "overlap", "vllm"):
        page, _ = pages[name]
        steps = pd.read_csv(runs[name] / "steps.csv")
        meta = json.loads((runs[name] / "run.json").read_text())
        keys = [k for k in ("rank", "device", "stream") if k in meta["groups"][0]]
        grouped = steps.groupby(keys)
        span = float((grouped.device_end_us.max() - grouped.device_start_us.min()).sum())
        between, inside = steps.gap_before_us.sum(), steps.idle_inside_us.sum()
        total = meta["summary"]["device_idle_total_us"]
        assert total == pytest.approx(between + inside, abs=0.01)  # no work between steps
        [shown] = tables(section(page, "device-idle"))
        shown = shown.set_index(shown.columns[0])
        expected = {
            "analysed span": span,
            "idle between steps": between,
            "idle inside steps": inside,
            "total device idle over the analysed span": total,
            "steps overlapping the steps before them (not idle)": steps.overlap_before_us.sum(),
        }
        for figure, value in expected.items():
            assert number(shown.loc[figure, "µs"]) == pytest.approx(value, abs=TOLERANCE_US)
            share = number(shown.loc[figure, "of the analysed span"])
            assert share == pytest.approx(100 * value / span, abs=0.051), figure


def test_why_the_gaps_names_the_blocking_dtoh_sync(pages, runs):
    page, _ = pages["vllm"]
    meta = json.loads((runs["vllm"] / "run.json").read_text())
    causes = section(page, "gap-causes")
    headline = meta["gap_causes"]["headline"]
    assert "cudaMemcpyAsync (DtoH pageable)" in headline
    shown_headline = re.sub(
        r"</?code>", "`", re.search(r'"verdict unknown">(.*?)</div>', causes)[1]
    )
    assert shown_headline == f"Why the gaps: {headline}"
    by_cause, by_range, by_segment = tables(causes)
    steps = pd.read_csv(runs["vllm"] / "steps.csv")
    gaps = steps.gap_before_us.dropna()
    [top] = by_cause.to_dict("records")  # one cause: the sync before every launch
    assert top["host wait before the gap"] == "cudaMemcpyAsync (DtoH pageable)"
    assert top["inside (host range)"] == "postprocess"
    assert top["waited for"] == "DtoH pageable copy"
    assert top["gaps"] == (gaps > 0).sum() == 11
    assert number(top["µs"]) == pytest.approx(gaps.sum(), abs=TOLERANCE_US)
    assert number(top["share"]) == 100.0
    want = pd.DataFrame(meta["gap_causes"]["by_range"])
    assert by_range["host range"].tolist() == want.range.tolist()
    assert [number(v) for v in by_range["µs"]] == pytest.approx(want.us.tolist(), abs=0.001)
    assert by_range["host range"].iloc[0] == "postprocess"
    pieces = sum(number(v) for v in by_segment["µs"])
    assert pieces == pytest.approx(gaps.sum(), abs=0.01)  # the pieces add up to the gaps


def test_causes_of_several_ranks_and_a_queued_share(pages, runs):
    page, _ = pages["groups"]
    meta = json.loads((runs["groups"] / "run.json").read_text())
    by_cause = tables(section(page, "gap-causes"))[0]
    want = pd.DataFrame(meta["gap_causes"]["by_cause"])
    assert by_cause["host wait before the gap"].tolist() == want.wait.tolist()
    assert by_cause["gaps"].tolist() == want.gaps.tolist()
    assert (
        "queued (launched before the device was free)"
        in by_cause["host wait before the gap"].tolist()
    )
    steps = pd.read_csv(runs["groups"] / "steps.csv")
    total = sum(number(v) for v in by_cause["µs"])
    assert total == pytest.approx(steps.gap_before_us.sum(), abs=0.01)


def test_engine_run_keeps_its_sections_and_gaps(both_run, tmp_path):
    pair = stepgap.load_runs(both_run)
    build_report(pair, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert re.findall(r'<section id="([^"]+)"', page) == ENGINE_SECTIONS
    for run in pair:
        [group] = data.step_groups(run)
        assert group.name == "" and data.group_keys(run) == []
        steps = run.steps
        window = data.timeline_window(steps, data.warmup_steps(run))
        rows = steps.set_index("step").loc[window.step]
        recomputed = (rows.device_start_us - rows.device_end_us.shift(1)).iloc[1:]
        assert window.gap_before_us.iloc[1:].to_numpy() == pytest.approx(recomputed.to_numpy())


def test_engine_and_trace_runs_in_one_report(both_run, runs, tmp_path):
    pair = stepgap.load_runs(both_run)
    trace = stepgap.load_run(runs["groups"])
    info = build_report([*pair, trace], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    anchors = re.findall(r'<section id="([^"]+)"', page)
    assert anchors[:6] == ["headline", "identity", "summary", "device-idle", "groups", "gap-causes"]
    [idle] = tables(section(page, "device-idle"))
    engine = idle.set_index(idle.columns[0])[f"{pair[0].name} (µs)"]
    assert engine["idle inside steps"] == "—"  # an engine's step timers cannot see it
    [groups] = tables(section(page, "groups"))
    assert set(groups["run"]) == {trace.name}
    assert "timeline" in info.figures and "gap-distribution" in info.figures


def test_many_groups_draw_a_bounded_number_of_lanes(runs):
    run = stepgap.load_run(runs["vllm"])
    steps = pd.concat([run.steps.assign(rank=r) for r in range(MAX_LANES_PER_RUN + 2)])
    meta = {**run.meta, "groups": [{**run.meta["groups"][0], "rank": r} for r in range(10)]}
    many = RunData(meta, steps.reset_index(drop=True), run.requests)
    assert len(data.step_groups(many)) == MAX_LANES_PER_RUN + 2
    plot = timeline_plot([("many", many)], run_styles(["many"], [many.mode]))
    assert plot.figure is not None
    assert any(f"the first {MAX_LANES_PER_RUN} drawn" in note for note in plot.notes)
    lanes = [t.get_text() for t in plot.figure.axes[0].get_yticklabels()]
    assert len(lanes) == MAX_LANES_PER_RUN and all(np.char.startswith(lanes, "many · rank"))
