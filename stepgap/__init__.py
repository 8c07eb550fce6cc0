"""stepgap: GPU idle gaps between LLM decode steps, and what an overlap schedule removes.

The run-directory API loads on first use, so `python -m stepgap --help` starts without
pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunData", "RunError", "load_run", "load_runs"]

if TYPE_CHECKING:
    from stepgap.runs import RunData, RunError, load_run, load_runs


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'stepgap' has no attribute {name!r}")
    from stepgap import runs

    value = getattr(runs, name)
    globals()[name] = value
    return value
