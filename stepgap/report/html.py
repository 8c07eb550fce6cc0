"""HTML building blocks of the report: one self-contained page, inline CSS, images as
base64 data URIs, nothing fetched from the network. All text goes through `escape`."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable
from html import escape

CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d8dadd; --warn-bg: #fff4e0;
  --warn-line: #e69f00; --good: #0a7d33; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial,
  sans-serif; color: var(--ink); background: #fff; }
main { max-width: 1140px; margin: 0 auto; padding: 24px 20px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid
  var(--line); }
h3 { font-size: 16px; margin: 18px 0 6px; }
h4 { font-size: 15px; margin: 14px 0 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.chip { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  margin-right: 6px; vertical-align: -1px; }
.warnings { background: var(--warn-bg); border-left: 5px solid var(--warn-line);
  padding: 10px 14px; margin: 16px 0; }
.warnings strong { display: block; margin-bottom: 4px; }
.warnings ul { margin: 0; padding-left: 20px; }
.verdict { font-size: 17px; padding: 10px 14px; border-radius: 6px; margin: 10px 0; }
.verdict.ok { background: #e7f6ec; border-left: 5px solid var(--good); }
.verdict.bad { background: #fdecea; border-left: 5px solid var(--bad); }
.verdict.unknown { background: #f1f3f4; border-left: 5px solid var(--muted); }
table { border-collapse: collapse; margin: 8px 0 16px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: right;
  vertical-align: top; }
th { background: #f6f7f8; }
th:first-child, td:first-child { text-align: left; }
td.better { color: var(--good); font-weight: 600; }
td.worse { color: var(--bad); font-weight: 600; }
table.env th, table.env td { text-align: left; }
table.verify th, table.verify td.text { text-align: left; }
table.env td:not(:first-child) { overflow-wrap: anywhere; }
table.env td:first-child { color: var(--muted); white-space: nowrap; }
table.groups { font-size: 13.5px; }
table.groups th, table.groups td { padding: 4px 7px; }
table.causes th:nth-child(-n+3), table.causes td:nth-child(-n+3) { text-align: left; }
table.causes td:nth-child(-n+3) { overflow-wrap: anywhere; }
code { font: 13px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; background: #f3f4f6;
  padding: 1px 4px; border-radius: 3px; word-break: break-all; }
figure { margin: 10px 0 22px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 6px; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
.runs { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 6px 0 0; padding: 0;
  list-style: none; }
footer { color: var(--muted); font-size: 13px; margin-top: 40px; }
"""


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its header."""
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def image(png: bytes, alt: str, display_scale: float) -> str:
    """A PNG embedded as a data URI, displayed at its size times `display_scale` (CSS px)
    at most, scaled down with the page."""
    width, height = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    w, h = round(width * display_scale), round(height * display_scale)
    return (
        f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" width="{w}" '
        f'height="{h}" style="max-width:{w}px">'
    )


def figure(img_html: str, caption: str) -> str:
    return f"<figure>{img_html}<figcaption>{escape(caption)}</figcaption></figure>"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def warnings_box(warnings: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    if not items:
        return ""
    return f'<div class="warnings" role="alert"><strong>Warnings</strong><ul>{items}</ul></div>'


def verdict(text: str, state: str) -> str:
    """A highlighted one-line finding; `state` is ok, bad or unknown."""
    return f'<div class="verdict {escape(state)}">{escape(text)}</div>'


def chip(colour: str) -> str:
    return f'<span class="chip" style="background:{escape(colour)}"></span>'


def run_list(entries: Iterable[tuple[str, str, str]]) -> str:
    """Legend of runs: (label, colour, description) each."""
    items = "".join(
        f"<li>{chip(colour)}<b>{escape(label)}</b> {escape(description)}</li>"
        for label, colour, description in entries
    )
    return f'<ul class="runs">{items}</ul>'


def table(
    columns: list[str],
    rows: list[list[str]],
    cell_classes: list[list[str]] | None = None,
    css_class: str = "",
    header_html: list[str] | None = None,
) -> str:
    """A table of already formatted text cells; `header_html` replaces escaped headers."""
    heads = header_html or [escape(c) for c in columns]
    head = "".join(f"<th>{h}</th>" for h in heads)
    body = []
    for r, row in enumerate(rows):
        classes = cell_classes[r] if cell_classes else [""] * len(row)
        cells = "".join(
            f'<td class="{escape(c)}">{escape(v)}</td>' if c else f"<td>{escape(v)}</td>"
            for v, c in zip(row, classes, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{escape(css_class)}"' if css_class else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def inline_code(text: str) -> str:
    """Text with `backquoted` parts set as code, everything escaped (an unpaired backquote
    stays a backquote)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # unpaired: the last backquote is text
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "".join(code(p) if i % 2 else escape(p) for i, p in enumerate(parts))


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, body: str, footer: str) -> str:
    """The whole document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No network: forbid every fetch except embedded data, whatever the page holds.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body><main><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>'
        f"{body}<footer>{escape(footer)}</footer></main></body></html>\n"
    )
