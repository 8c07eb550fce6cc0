"""stepgap: GPU idle gaps between LLM decode steps, and what an overlap schedule removes."""

from stepgap.runs import RunData, RunError, load_run, load_runs

__all__ = ["RunData", "RunError", "load_run", "load_runs"]
