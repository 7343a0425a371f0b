"""Rounds of a benchmark: every measure in every round, and ratios taken round by round.

On a shared machine a noisy moment slows whatever runs in it, so a figure and
its baseline are timed in the same round, and a ratio is the median of each
round's own ratio rather than the ratio of two medians that may come from
different rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["ratio", "rounds_of"]


async def rounds_of(rounds: int, *measures: Callable[[int], Awaitable[float]]) -> list[list[float]]:
    """Each measure's value in each of ``rounds`` rounds. Every round runs them all, in
    order, and passes its index, so a noisy moment of the machine hits a figure and its
    baseline alike, and each round can open fresh files."""
    values: list[list[float]] = [[] for _ in measures]
    for round_ in range(rounds):
        for taken, measure in zip(values, measures, strict=True):
            taken.append(await measure(round_))
    return values


def ratio(rates: Sequence[float], baselines: Sequence[float]) -> float:
    """The median over the rounds of each round's rate ÷ the baseline of the same round."""
    return statistics.median([r / b for r, b in zip(rates, baselines, strict=True)])
