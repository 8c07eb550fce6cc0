"""A run's summary as read back: current key names, with the schema-1 names still readable.

Runs saved before the metric registry (schema 1) named metrics `tpot_p50_ms`,
`output_throughput_tok_s`, `wall_s`, ...; loading renames them (`median_tpot_ms`,
`output_throughput`, `duration`). Either name reads the same value, both ways, so old code
and old rules files keep working on new runs and new code on old runs.
"""

from __future__ import annotations

from typing import Any

from stepgap.metric_registry import LEGACY_KEYS

_OLD_NAMES = {new: old for old, new in LEGACY_KEYS.items()}


class Summary(dict[str, Any]):
    """A summary dict whose schema-1 and current key names are aliases of each other.
    Iteration, `len` and JSON output see only the stored (current) names."""

    def __missing__(self, key: str) -> Any:
        alias = _alias(key)
        if alias is None or not dict.__contains__(self, alias):
            raise KeyError(key)
        return dict.__getitem__(self, alias)

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        alias = _alias(key) if isinstance(key, str) else None
        return alias is not None and dict.__contains__(self, alias)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            return default
        return self[key]


def _alias(key: str) -> str | None:
    return LEGACY_KEYS.get(key) or _OLD_NAMES.get(key)


def upgrade(summary: dict[str, Any]) -> Summary:
    """The summary with schema-1 keys renamed to their current names (values unchanged)."""
    return Summary({LEGACY_KEYS.get(key, key): value for key, value in summary.items()})
