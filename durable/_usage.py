"""What a run's model calls cost: totals over its model-call and conversation steps.

A model-call step's result carries a ``usage`` object; the run's totals are the
sum of its numeric fields, kept in one place for every substrate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._records import StepRecord

__all__ = ["USAGE_FIELDS", "add_usage", "usage_totals"]

USAGE_FIELDS = ("input_tokens", "output_tokens", "cost")
USAGE_KINDS = frozenset({"llm", "conversation"})
"""Steps whose results carry ``usage``: model calls, and conversations (their totals)."""


def add_usage(totals: dict[str, float], result: Any) -> dict[str, float]:
    """Add the ``usage`` of one model-call result to ``totals``; return them."""
    usage = result.get("usage") if isinstance(result, Mapping) else None
    if isinstance(usage, Mapping):
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
    return totals


def usage_totals(steps: Iterable[StepRecord]) -> dict[str, float]:
    """Tokens and cost of a run's completed model calls, from its step records."""
    totals: dict[str, float] = dict.fromkeys(USAGE_FIELDS, 0)
    for record in steps:
        if record.kind in USAGE_KINDS and record.status == "completed":
            add_usage(totals, record.result)
    return totals
