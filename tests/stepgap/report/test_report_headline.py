"""The report's first screen: the workload in words, and the overlap-vs-sync answer with its
noise interval and the tokens' verdict, computed here from the runs' own summaries."""

import re

import stepgap
from stepgap.report import build_report
from stepgap.report.headline import answer_pair


def headline(page: str) -> str:
    section = re.search(r'<section id="headline">(.*?)</section>', page, re.S)
    assert section, "no headline section"
    return section.group(1)


def test_the_first_section_states_the_workload_and_the_answer(both_run, tmp_path):
    runs = stepgap.load_runs(both_run)
    out = tmp_path / "report.html"
    build_report(runs, out)
    page = out.read_text()
    first = headline(page)
    assert page.index('id="headline"') < page.index('id="identity"')
    workload = runs[0].meta["workload"]
    assert f"{workload['num_requests']} requests, concurrency {workload['concurrency']}" in first
    assert f"model {workload['model']}" in first
    sync, overlap = sorted(runs, key=lambda run: run.mode != "sync")
    gap_a, gap_b = sync.summary["gap_p50_us"], overlap.summary["gap_p50_us"]
    assert f"gap p50 {gap_a:.4g} → {gap_b:.4g} µs (×{gap_b / gap_a:.3f}, 95% noise [" in first
    assert "output throughput" in first and "TPOT median" in first
    assert "tokens identical over" in first


def test_the_answer_is_sync_then_overlap_whatever_the_order(both_run):
    runs = stepgap.load_runs(both_run)
    labelled = [(run.mode, run) for run in runs]
    for order in (labelled, labelled[::-1]):
        pair = answer_pair(order)
        assert pair is not None and [label for label, _ in pair] == ["sync", "overlap"]
    assert answer_pair(labelled[:1]) is None
