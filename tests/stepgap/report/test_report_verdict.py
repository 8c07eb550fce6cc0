"""`stepgap report --verify`: the Verification section shows real `stepgap verify` verdicts
(CPU, one family, one workload, one seed) as the verdict files hold them; a bad verdict
file is a one-line error and no page."""

import json
import re

import lxml.html
import pytest
from headless_chromium import Chromium, find_chromium
from typer.testing import CliRunner

from stepgap.cli import app
from stepgap.report.verification import read_verdict_view
from stepgap.verify.checks import CHECKS
from stepgap.verify.verdict import VerdictError

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def all_faults_verdict(verdict_file):
    """The self-test verdict: the clean engine, then each planted fault, jitter off and on.
    It passes only if each race fault showed in its one jittered run, which is likely, not
    certain: the page must show the verdict either way, so either is accepted here."""
    path = verdict_file("--all-faults", exit_code=None)
    assert json.loads(path.read_text())["engine_passed"], "a false alarm on the clean engine"
    return path


@pytest.fixture(scope="module")
def fault_verdict(verdict_file):
    """A failed verdict: the engine under test has a planted fault."""
    return verdict_file("--fault", "no-stop-lag", exit_code=1)


def invoke(*args):
    return CliRunner().invoke(app, ["report", *map(str, args)])


def tables(section) -> list[list[list[str]]]:
    """Each table of `section` as rows of cell texts, header row first."""
    return [
        [[" ".join(cell.text_content().split()) for cell in row] for row in table.iter("tr")]
        for table in section.iter("table")
    ]


def verification(page_path):
    (section,) = lxml.html.parse(str(page_path)).getroot().xpath('//section[@id="verification"]')
    return section


def where(finding: dict) -> str:
    return (
        f"{finding['mode']} run, request {finding['request_id']}, "
        f"position {finding['position']}, step {finding['step']}"
    )


def test_verification_section_holds_the_verdicts(
    both_run, all_faults_verdict, fault_verdict, tmp_path
):
    out = tmp_path / "report.html"
    result = invoke(both_run, "--verify", all_faults_verdict, "--verify", fault_verdict, "-o", out)
    assert result.exit_code == 0, result.output
    clean, faulty = (json.loads(p.read_text()) for p in (all_faults_verdict, fault_verdict))
    failed = 2 - clean["passed"]
    assert f"2 verify verdict(s), {failed} failed" in " ".join(result.stdout.split())
    page = out.read_text()
    assert (
        page.index('id="identity"') < page.index('id="verification"') < page.index('id="summary"')
    )
    section = verification(out)
    headings = [" ".join(h.text_content().split()) for h in section.iter("h3")]
    assert headings == [str(all_faults_verdict), str(fault_verdict)]
    boxes = section.find_class("verdict")
    assert boxes[0].get("class") == f"verdict {'ok' if clean['passed'] else 'bad'}"
    assert clean["summary"] in boxes[0].text_content()
    assert boxes[1].get("class") == "verdict bad"
    assert boxes[1].text_content() == f"✗ stepgap verify FAILED: {faulty['summary']}"

    settings, checks, faults, *rest = tables(section)
    assert ["verdict file", str(all_faults_verdict)] in settings
    assert ["workloads", "single-slot"] in settings and ["jitter", "heavy"] in settings
    assert checks[0] == ["check", "description", "runs", "failed", "first failure", "diagnosis"]
    assert [row[0] for row in checks[1:]] == list(CHECKS)
    for row in checks[1:]:
        expected = clean["checks"][row[0]]
        assert row[1:4] == [expected["description"], "1", str(expected["runs_failed"])]

    levels = clean["faults"]["jitter_levels"]
    assert faults[0] == [
        "fault",
        "race",
        "what it changes",
        *(f"caught, jitter {level}" for level in levels),
        "caught",
        "first check",
    ]
    by_fault = clean["faults"]["by_fault"]
    assert [row[0] for row in faults[1:]] == list(by_fault)
    for row in faults[1:]:
        expected = by_fault[row[0]]
        counts = [
            f"{expected['jitter'][lv]['caught']}/{expected['jitter'][lv]['runs']}" for lv in levels
        ]
        assert row[2:-2] == [expected["change"], *counts]
        assert row[-2] == ("yes" if expected["caught"] else "NO")
        for check in {c for lv in levels for c in expected["jitter"][lv]["first_checks"]}:
            assert check in row[-1]

    # The failed verdict: its settings, checks with where each first failed, first failure.
    fault_settings, fault_checks, first_failure = rest
    assert ["planted fault", "no-stop-lag"] in fault_settings
    for row in fault_checks[1:]:
        expected = faulty["checks"][row[0]]
        first = expected["first"]
        assert row[3] == str(expected["runs_failed"])
        assert row[4:] == ([where(first), first["diagnosis"]] if first else ["—", "—"])
    first = faulty["first_failure"]
    assert ["check", first["check"]] in first_failure
    assert ["where", where(first)] in first_failure
    assert ["diagnosis", first["diagnosis"]] in first_failure
    assert any(r[0] == "case" and "fault no-stop-lag" in r[1] for r in first_failure)


def test_without_verify_there_is_no_section(both_run, tmp_path):
    out = tmp_path / "report.html"
    result = invoke(both_run, "-o", out)
    assert result.exit_code == 0, result.output
    assert 'id="verification"' not in out.read_text()
    assert "verdict" not in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such verdict file"),
        ("[1, 2", "not a readable JSON verdict"),
        ('{"schema": "stepgap-verify/0", "passed": true}', "not a stepgap-verify/1 verdict"),
        ('{"schema": "stepgap-verify/1", "passed": true}', "malformed verdict (missing 'checks')"),
    ],
)
def test_bad_verdict_file_is_a_one_line_error(both_run, tmp_path, content, message):
    verdict, out = tmp_path / "verdict.json", tmp_path / "report.html"
    if content is not None:
        verdict.write_text(content)
    result = invoke(both_run, "--verify", verdict, "-o", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {verdict}: "), lines
    assert message in lines[0]
    assert not out.exists()


def test_malformed_parts_of_a_real_verdict_are_named(fault_verdict, tmp_path):
    verdict = json.loads(fault_verdict.read_text())
    broken = tmp_path / "broken.json"
    verdict["checks"]["positions"]["runs_failed"] = "many"
    broken.write_text(json.dumps(verdict))
    with pytest.raises(
        VerdictError, match=re.escape("malformed verdict ('runs_failed' is not a count)")
    ):
        read_verdict_view(broken)
    verdict = json.loads(fault_verdict.read_text())
    verdict["first_failure"]["overlap"] = {"token": 3}
    broken.write_text(json.dumps(verdict))
    with pytest.raises(VerdictError, match=re.escape("malformed verdict (missing 'margin')")):
        read_verdict_view(broken)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_report_with_verdicts_opens_cleanly_in_headless_chromium(
    both_run, all_faults_verdict, fault_verdict, tmp_path
):
    out = tmp_path / "report.html"
    result = invoke(both_run, "--verify", all_faults_verdict, "--verify", fault_verdict, "-o", out)
    assert result.exit_code == 0, result.output
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Chromium(CHROMIUM, profile) as browser:
        page = browser.check_page(out.as_uri())
    assert page.console_errors == []
    assert page.requests[0] == out.as_uri()
    assert all(url.startswith("data:image/png;base64,") for url in page.requests[1:])
    assert len(page.images) == 5 and all(image["decoded"] for image in page.images)
