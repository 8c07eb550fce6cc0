"""How runs look in every figure: one colour per mode, a line style per repeat of a mode."""

from __future__ import annotations

from dataclasses import dataclass

# Okabe–Ito colours (colour-blind safe). sync and overlap are fixed so every report reads
# the same; other modes take the rest in order of first appearance.
MODE_COLOURS = {"sync": "#0072B2", "overlap": "#E69F00"}
OTHER_MODE_COLOURS = ("#009E73", "#CC79A7", "#56B4E9", "#8C6D31", "#555555")
IDLE_COLOUR = "#D62728"  # device idle (gaps) in the timeline; no mode uses red
OVERLAP_COLOUR = "#222222"  # hatching over steps that ran beside the ones before them
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


def _shade(colour: str, amount: float) -> str:
    """`colour` mixed toward white (amount > 0) or black (amount < 0) by |amount|."""
    channels = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * abs(amount)) for c in channels]
    return "#" + "".join(f"{c:02X}" for c in mixed)


def group_styles(run: RunStyle, names: list[str]) -> dict[str, RunStyle]:
    """A style per step group (rank, stream) of one run: the first keeps the run's style;
    the others take shades of the run's colour, darker and lighter in turn, and the next
    line styles, so lanes and lines of one run still read as that run."""
    start = LINE_STYLES.index(run.line_style)
    styles = {}
    for i, name in enumerate(names):
        depth = 0.2 * ((i + 1) // 2) if i else 0.0
        amount = min(depth, 0.6) * (-1 if i % 2 else 1)
        colour = _shade(run.colour, amount) if i else run.colour
        line = LINE_STYLES[(start + i) % len(LINE_STYLES)]
        styles[name] = RunStyle(name, run.mode, colour, line)
    return styles
