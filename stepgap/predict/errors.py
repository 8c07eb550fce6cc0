"""The one error a prediction raises: its input cannot be predicted from (one line)."""

from __future__ import annotations

from stepgap.errors import RunError


class PredictError(RunError):
    """The run given cannot be predicted from: not a sync run, incomplete, no host phases,
    or an option out of range. A RunError, so every command prints it as one line."""


def with_article(mode: str) -> str:
    """`an overlap`, `a sync`: a mode with its article, for messages."""
    return f"{'an' if mode[:1] in 'aeiou' else 'a'} {mode}"
