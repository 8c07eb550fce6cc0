"""The report of a real sync + overlap CPU run, opened in headless Chromium: it loads with
no console errors and no network requests, every image decodes, and it is not blank."""

import io
from pathlib import Path

import numpy as np
import pytest
from headless_chromium import Chromium, find_chromium
from PIL import Image
from typer.testing import CliRunner

from stepgap.cli import app

CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_opens_cleanly_in_headless_chromium(both_run, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(both_run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Chromium(CHROMIUM, profile) as browser:
        page = browser.check_page(out.as_uri())
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)

    assert page.console_errors == []
    # Only the page itself and its embedded images: nothing from the network.
    assert page.requests[0] == out.as_uri()
    assert all(url.startswith("data:image/png;base64,") for url in page.requests[1:])
    assert page.title == "stepgap report: smoke"
    assert len(page.images) == 5
    for image in page.images:
        assert image["decoded"] and image["width"] > 0 and image["height"] > 0, image

    shot = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("RGB"))
    height, width, _ = shot.shape
    assert width >= 1000 and height > 3000  # the whole page, not a viewport of it
    not_white = (shot < 245).any(axis=2)
    assert not_white.mean() > 0.05  # text, tables and figures cover the page
    rows_with_ink = not_white.any(axis=1).mean()
    assert rows_with_ink > 0.5  # content runs down the page, not one stripe of it
    colours = np.unique(shot.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 100  # figures in colour, not a flat fill


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_the_browser_check_sees_broken_pages(tmp_path):
    """The checks above are not vacuous: a script error, a console error, an image that
    does not decode and a network fetch are all caught."""
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        "<!DOCTYPE html><html><head><title>broken</title></head><body>"
        '<img src="data:image/png;base64,iVBORw0KGgoAAAAN" alt="truncated png">'
        '<img src="http://127.0.0.1:9/none.png" alt="remote">'
        "<script>console.error('planted'); undefinedFunction();</script></body></html>"
    )
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Chromium(CHROMIUM, profile) as browser:
        page = browser.check_page(page_file.as_uri())
    errors = " | ".join(page.console_errors)
    assert "planted" in errors and "undefinedFunction" in errors
    assert [image["decoded"] for image in page.images] == [False, False]
    assert "http://127.0.0.1:9/none.png" in page.requests


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_of_a_two_rank_trace_opens_cleanly(tmp_path):
    """An analyzed two-rank, two-stream trace: its idle, per-group and gap-cause sections
    render, its figures decode, and the page shows no negative gap."""
    data = Path(__file__).resolve().parents[2] / "data" / "analyze"
    run = tmp_path / "two-rank"
    traces = [data / "vllm_graph_sync.trace.json.gz", data / "sglang_overlap.trace.json.gz"]
    options = ["--streams", "separate", "--range", r"^(execute_context_|step\[)"]
    result = CliRunner().invoke(app, ["analyze", *map(str, traces), *options, "--out", str(run)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Chromium(CHROMIUM, profile) as browser:
        page = browser.check_page(out.as_uri())
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)

    assert page.console_errors == []
    assert page.requests[0] == out.as_uri()
    assert all(url.startswith("data:image/png;base64,") for url in page.requests[1:])
    assert len(page.images) == 2  # timeline and gap distribution: a trace has no requests
    for image in page.images:
        assert image["decoded"] and image["width"] > 0 and image["height"] > 0, image
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("RGB"))
    height, width, _ = shot.shape
    assert width >= 1000 and height > 2000
    assert (shot < 245).any(axis=2).any(axis=1).mean() > 0.4  # content down the page
    html_text = out.read_text()
    for anchor in ("device-idle", "groups", "gap-causes", "timeline", "gap-distribution"):
        assert f'<section id="{anchor}">' in html_text
    assert "mean gap -" not in html_text
