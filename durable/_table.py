"""Plain-text tables for terminals: the one place the CLI and the demos lay out columns.

Each column is as wide as its widest cell, up to ``max_width``; a longer cell is
cut and ends with ``…``, so no value can run into the next column. Widths count
terminal cells: wide characters such as CJK and most emoji take two.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from ._records import StepRecord

__all__ = ["ELLIPSIS", "run_tree", "steps_table", "table"]

ELLIPSIS = "…"
"""Ends a cell that was cut to fit its column."""

_GAP = "  "


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    max_width: int = 40,
    right: Sequence[int] = (),
    whole: Sequence[int] = (),
    indent: str = "",
) -> str:
    """``rows`` under ``header``, in columns of at most ``max_width`` cells.

    Columns whose index is in ``right`` are aligned right (counts, positions);
    those in ``whole`` are never cut (ids a reader copies). The last column is
    never padded. Control characters show as spaces, so a value cannot break
    its line.
    """
    if max_width < 2:
        raise ValueError(f"max_width must be at least 2 cells, got {max_width}")
    lines = [
        [
            _printable(str(cell)) if i in whole else _fit(_printable(str(cell)), max_width)
            for i, cell in enumerate(row)
        ]
        for row in (header, *rows)
    ]
    for line in lines:
        if len(line) != len(header):
            raise ValueError(f"a row has {len(line)} cells but the header has {len(header)}")
    widths = [max(_cells(line[i]) for line in lines) for i in range(len(header))]
    last = len(header) - 1
    out = []
    for line in lines:
        cells = []
        for i, text in enumerate(line):
            pad = " " * (widths[i] - _cells(text))
            cells.append(pad + text if i in right else text if i == last else text + pad)
        out.append(indent + _GAP.join(cells).rstrip())
    return "\n".join(out)


def steps_table(steps: Iterable[StepRecord], *, indent: str = "", ended: bool = False) -> str:
    """A run's steps: position, intent, kind, status and attempts.

    In a run that has ended (``ended``), a step still ``running`` never finished:
    it shows as ``interrupted``.
    """

    def status(step: StepRecord) -> str:
        return "interrupted" if ended and step.status == "running" else step.status

    return table(
        ("#", "intent", "kind", "status", "attempts"),
        [(s.step_index, s.intent, s.kind, status(s), s.attempts) for s in steps],
        right=(0,),
        indent=indent,
    )


def run_tree(runs: Sequence[tuple[str, str | None, str, str]]) -> str:
    """Runs as a tree: each child under its parent, indented.

    ``runs`` holds ``(run_id, parent_run_id, agent, status)`` in listing order. A
    child whose parent is not listed shows at the top level, naming its parent.
    """
    listed = {run_id for run_id, *_ in runs}
    children: dict[str, list[tuple[str, str | None, str, str]]] = {}
    roots = []
    for run in runs:
        parent = run[1]
        if parent is not None and parent in listed:
            children.setdefault(parent, []).append(run)
        else:
            roots.append(run)
    rows: list[tuple[str, str, str]] = []

    def add(run: tuple[str, str | None, str, str], prefix: str, branch: str) -> None:
        run_id, parent, agent, status = run
        shown = prefix + branch + run_id
        if not branch and parent is not None:
            shown += f" (child of {parent})"
        rows.append((shown, agent, status))
        below = children.get(run_id, [])
        inner = prefix + ("  " if branch in ("", "└ ") else "│ ")
        for i, child in enumerate(below):
            add(child, inner if branch else prefix, "└ " if i == len(below) - 1 else "├ ")

    for root in roots:
        add(root, "", "")
    return table(("run", "agent", "status"), rows, whole=(0,))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cells(text: str) -> int:
    return sum(_char_cells(c) for c in text)


def _fit(text: str, width: int) -> str:
    if _cells(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        used += _char_cells(char)
        if used > width - 1:  # one cell for the marker
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS
