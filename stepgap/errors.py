"""The project's expected errors: each message is one line meant for users."""

from __future__ import annotations


class RunError(Exception):
    """A run directory is missing, incomplete where completeness is needed, or unreadable."""


class OutputPathError(ValueError):
    """An output path cannot take what a command would write there; found before any work."""
