"""Gate output: JUnit XML that validates against the JUnit schema, a GFM table, a terminal table."""

import re
import xml.etree.ElementTree as ET

import pytest
from gate_plant import JUNIT_XSD, RUN_A, RUN_B
from markdown_it import MarkdownIt
from rich.console import Console

from stepgap.gate.evaluate import run_gate
from stepgap.gate.output import junit_xml, markdown, terminal_table

RULES = """\
[[rule]]
check = "tokens_identical == true"

[[rule]]
check = "gap_p50_us <= baseline + 5%"

[[rule]]
name = "overlap idles more than sync | on purpose"
check = "overlap/sync idle_fraction > 1"
description = "fails: overlap idles less"
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """RUN_B against RUN_A: a pass, a pass within noise, a plain pass and a failure."""
    rules = tmp_path_factory.mktemp("rules") / "gates.toml"
    rules.write_text(RULES)
    report = run_gate(RUN_B, rules, RUN_A)
    assert [c.status for c in report.checks] == ["PASS", "PASS", "PASS (noise)", "FAIL"]
    return report


# --- JUnit ---------------------------------------------------------------------------------

INT = re.compile(r"^\d+$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
SUITE_CHILDREN = ["properties", "testcase", "system-out", "system-err"]  # in this order
CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}


def junit_structure_errors(root: ET.Element) -> list[str]:
    """What breaks the Jenkins/Ant JUnit structure (the schema's rules, checked by hand)."""
    errors = []
    if root.tag != "testsuites":
        return [f"root is <{root.tag}>, not <testsuites>"]
    for suite in root:
        if suite.tag != "testsuite":
            errors.append(f"<testsuites> holds <{suite.tag}>")
            continue
        for attribute in ("tests", "failures", "errors"):
            if not INT.match(suite.get(attribute, "")):
                errors.append(f"testsuite {attribute}={suite.get(attribute)!r}")
        if not suite.get("name"):
            errors.append("testsuite without a name")
        order = [SUITE_CHILDREN.index(child.tag) for child in suite if child.tag in SUITE_CHILDREN]
        errors += [f"<testsuite> holds <{c.tag}>" for c in suite if c.tag not in SUITE_CHILDREN]
        if order != sorted(order):
            errors.append("testsuite children out of order")
        cases = suite.findall("testcase")
        for case in cases:
            if not case.get("name") or not case.get("classname"):
                errors.append("testcase without name or classname")
            if not DECIMAL.match(case.get("time", "0")):
                errors.append(f"testcase time={case.get('time')!r}")
            errors += [f"<testcase> holds <{c.tag}>" for c in case if c.tag not in CASE_CHILDREN]
        if int(suite.get("tests", -1)) != len(cases):
            errors.append("tests count differs from the testcases")
        if int(suite.get("failures", -1)) != sum(len(c.findall("failure")) for c in cases):
            errors.append("failures count differs from the failures")
    return errors


def schema_errors(document: str) -> list[str]:
    """Validate against tests/data/gate/junit.xsd with lxml, or by hand where lxml is absent."""
    try:
        from lxml import etree
    except ImportError:
        return junit_structure_errors(ET.fromstring(document))
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    valid = schema.validate(etree.fromstring(document.encode()))
    return [] if valid else [str(error) for error in schema.error_log]


def test_junit_validates_against_the_junit_schema(report):
    document = junit_xml(report)
    assert schema_errors(document) == []
    assert junit_structure_errors(ET.fromstring(document)) == []


def test_schema_check_rejects_a_broken_report(report):
    root = ET.fromstring(junit_xml(report))
    case = root.find("testsuite/testcase")
    del case.attrib["name"]
    ET.SubElement(case, "verdict")
    broken = ET.tostring(root, "unicode")
    assert schema_errors(broken)
    assert "testcase without name or classname" in junit_structure_errors(root)


def test_junit_has_one_testcase_per_check_and_failures_with_messages(report):
    suite = ET.fromstring(junit_xml(report)).find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.title for c in report.checks]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "0")
    (failed,) = [c for c in cases if c.find("failure") is not None]
    failure = failed.find("failure")
    assert failure.get("message") == report.failures[0].detail
    assert "fails: overlap idles less" in failure.text and "(line 9)" in failure.text
    noisy = cases[2].find("system-out").text
    assert "passed only because the change lies within run-to-run noise" in noisy
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["run"] == str(RUN_B) and properties["baseline"] == str(RUN_A)


# --- Markdown ------------------------------------------------------------------------------


def split_row(line: str) -> list[str]:
    """The cells of one GFM table row: split on pipes that are not escaped."""
    assert line.startswith("|") and line.endswith("|"), line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line[1:-1])]


def test_markdown_is_a_gfm_table_with_one_row_per_check(report):
    lines = markdown(report).splitlines()
    table = [line for line in lines if line.startswith("|")]
    header, separator, *body = table
    columns = split_row(header)
    assert columns[:3] == ["status", "check", "value"] and columns[-1] == "detail"
    assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in split_row(separator))
    assert len(split_row(separator)) == len(columns)
    assert len(body) == len(report.checks)
    for row, check in zip(body, report.checks, strict=True):
        cells = split_row(row)
        assert len(cells) == len(columns)
        assert cells[1] == f"`{check.title}`"
    assert lines[0] == "### stepgap gate: FAILED"
    assert "Passed only because of noise: `gap_p50_us <= baseline + 5% [overlap]`." in lines


def test_markdown_renders_as_an_html_table(report):
    """What GitHub shows: markdown-it (CommonMark + GFM tables) renders one <tr> per check."""
    html = MarkdownIt("commonmark").enable("table").render(markdown(report))
    assert html.count("<table>") == 1
    assert len(re.findall(r"<th[ >]", html)) == 8
    body = html.split("<tbody>")[1]
    assert body.count("<tr>") == len(report.checks)
    assert "overlap idles more than sync | on purpose" in body  # the escaped pipe is text


# --- terminal ------------------------------------------------------------------------------


def test_terminal_table_shows_every_check(report):
    console = Console(record=True, width=240)
    console.print(terminal_table(report))
    text = console.export_text()
    for check in report.checks:
        assert check.title in text
    assert text.count("PASS (noise)") == 1 and text.count("FAIL") == 1
