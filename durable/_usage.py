"""What a run's model calls cost: totals over its model-call and conversation steps.

A model-call step's result carries a ``usage`` object; the run's totals are the
sum of its numeric fields, kept in one place for every substrate. A field a call
left unknown (``None``: the server reported no usage) makes the total unknown
too: a sum that leaves a call out would look exact and be wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._records import StepRecord

__all__ = ["USAGE_FIELDS", "Totals", "add_usage", "usage_line", "usage_totals"]

USAGE_FIELDS = ("input_tokens", "output_tokens", "cost")
USAGE_KINDS = frozenset({"llm", "conversation", "agent"})
"""Steps whose results carry ``usage``: model calls, and child runs (their totals)."""


Totals = dict[str, float | None]
"""Tokens in, tokens out and cost; ``None`` where some call's usage is unknown."""


def add_usage(totals: Totals, result: Any) -> Totals:
    """Add the ``usage`` of one model-call result to ``totals``; return them."""
    usage = result.get("usage") if isinstance(result, Mapping) else None
    if isinstance(usage, Mapping):
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                so_far = totals.get(name, 0)
                totals[name] = None if so_far is None else so_far + value
            else:
                totals[name] = None  # unknown stays unknown; never counted as 0
    return totals


def usage_totals(steps: Iterable[StepRecord]) -> Totals:
    """Tokens and cost of a run's completed model calls, from its step records."""
    totals: Totals = dict.fromkeys(USAGE_FIELDS, 0)
    for record in steps:
        if record.kind in USAGE_KINDS and record.status == "completed":
            add_usage(totals, record.result)
    return totals


def usage_line(totals: Mapping[str, float | None]) -> str:
    """One line for people: the totals, with ``unknown`` where a call reported none."""

    def shown(name: str) -> str:
        value = totals.get(name, 0)
        return "unknown" if value is None else f"{value:g}"

    line = (
        f"model calls: {shown('input_tokens')} tokens in, {shown('output_tokens')} out, "
        f"cost {shown('cost')}"
    )
    if any(totals.get(name, 0) is None for name in USAGE_FIELDS):
        line += (
            " (a model server reported no usage; if it reports usage only without "
            "streaming, set that model's stream to false)"
        )
    return line
