"""HTML reports of runs: `build_report(runs, "report.html")`.

`data` turns runs into small DataFrames (stateless, bounded in size), `figures` draws
them with matplotlib, `tables` holds the report's tables and findings, `verification`
reads `stepgap verify` verdicts and `verify_section` shows them, `html` assembles the
page, and `builder` ties them together.
"""

from stepgap.report.builder import ReportInfo, build_report

__all__ = ["ReportInfo", "build_report"]
