"""How runs look in every figure: one colour per mode, a line style per repeat of a mode."""

from __future__ import annotations

from dataclasses import dataclass

# Okabe–Ito colours (colour-blind safe). sync and overlap are fixed so every report reads
# the same; other modes take the rest in order of first appearance.
MODE_COLOURS = {"sync": "#0072B2", "overlap": "#E69F00"}
OTHER_MODE_COLOURS = ("#009E73", "#CC79A7", "#56B4E9", "#8C6D31", "#555555")
IDLE_COLOUR = "#D62728"  # device idle (gaps) in the timeline; no mode uses red
LINE_STYLES = ("-", "--", ":", "-.")
# Host phases are a different dimension from modes: muted colours no mode uses.
PHASE_COLOURS = {
    "schedule": "#8DD3C7",
    "prepare": "#BEBADA",
    "launch": "#FB8072",
    "wait": "#80B1D3",
    "postprocess": "#FDB462",
    "output": "#B3DE69",
    "other": "#D9D9D9",
}


@dataclass(frozen=True)
class RunStyle:
    """Colour and line style of one run in every figure."""

    label: str
    mode: str
    colour: str
    line_style: str

    def __post_init__(self) -> None:
        if not self.colour.startswith("#"):
            raise ValueError(f"colour must be a hex string, got {self.colour!r}")
        if self.line_style not in LINE_STYLES:
            raise ValueError(f"line style must be one of {LINE_STYLES}, got {self.line_style!r}")


def run_styles(labels: list[str], modes: list[str]) -> dict[str, RunStyle]:
    """A style per run label: its mode's colour; runs sharing a mode differ by line style."""
    others = sorted({m for m in modes if m not in MODE_COLOURS}, key=modes.index)
    colours = dict(MODE_COLOURS)
    for i, mode in enumerate(others):
        colours[mode] = OTHER_MODE_COLOURS[i % len(OTHER_MODE_COLOURS)]
    repeats: dict[str, int] = {}
    styles = {}
    for label, mode in zip(labels, modes, strict=True):
        n = repeats.get(mode, 0)
        repeats[mode] = n + 1
        styles[label] = RunStyle(label, mode, colours[mode], LINE_STYLES[n % len(LINE_STYLES)])
    return styles
