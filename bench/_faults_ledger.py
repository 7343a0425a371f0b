"""Reading a fault scenario's ledger: what ran, what ran twice, and why it may have.

The invariants every scenario checks:

- every run completed, and every one of its steps has a ``start`` and a ``done``;
- a step that started more than once did so only because an earlier attempt was
  in flight at a kill: that attempt's process was killed after the attempt started
  and before the next one did (or the server went down in between);
- with no kills (the races), every step started exactly once.

Recovery after a kill is the time from the kill to the next ledger line of each
run the killed process held (its latest line before the kill was that process's,
and the run was not finished): the longest of them is the kill's recovery.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Entry", "Kill", "Ledger", "Report", "check", "holders", "read_ledger", "spread"]


@dataclass(frozen=True)
class Entry:
    kind: str
    """``start`` or ``done``."""
    run: str
    step: int
    pid: int
    at: float
    """Unix time."""


@dataclass(frozen=True)
class Kill:
    pid: int
    at: float
    """Unix time, taken just before the signal was sent."""
    dead_at: float | None = None
    """Unix time once the process was reaped: it wrote nothing after. On a loaded
    machine a process may write a line between ``at`` and the signal landing."""

    @property
    def dead(self) -> float:
        return self.at if self.dead_at is None else self.dead_at


@dataclass
class Ledger:
    entries: list[Entry]

    def by_step(self) -> dict[tuple[str, int], list[Entry]]:
        found: dict[tuple[str, int], list[Entry]] = defaultdict(list)
        for entry in self.entries:
            found[(entry.run, entry.step)].append(entry)
        return found

    def by_run(self) -> dict[str, list[Entry]]:
        found: dict[str, list[Entry]] = defaultdict(list)
        for entry in self.entries:
            found[entry.run].append(entry)
        return found


def read_ledger(path: Path) -> Ledger:
    """The ledger's lines in time order; a torn last line (a killed writer) is refused."""
    entries: list[Entry] = []
    if path.exists():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if len(parts) != 5 or parts[0] not in ("start", "done"):
                raise ValueError(f"{path}:{number}: not a ledger line: {line!r}")
            kind, run, step, pid, at = parts
            entries.append(Entry(kind, run, int(step), int(pid), float(at)))
    entries.sort(key=lambda e: e.at)
    return Ledger(entries)


@dataclass
class Report:
    """What a scenario's ledger shows; ``problems`` empty means every invariant held."""

    runs: int = 0
    steps: int = 0
    attempts: int = 0
    duplicates: list[tuple[str, int, bool]] = field(default_factory=list)
    """Each step that started more than once: run, step, and whether the earlier attempt
    had finished (its ``done`` written) before its process was killed, its outcome lost."""
    unrecorded: list[float] = field(default_factory=list)
    """For each attempt that finished but was run again: seconds from its end to the kill,
    the time its outcome was not yet recorded."""
    recoveries: list[float] = field(default_factory=list)
    """Per kill that held runs: seconds from the kill until each of those runs moved on."""
    idle_kills: int = 0
    """Kills of a process that held no unfinished run."""
    problems: list[str] = field(default_factory=list)

    def lines(self, kills: int) -> list[str]:
        finished = sum(1 for _, _, done in self.duplicates if done)
        out = [
            f"runs {self.runs}, steps {self.steps}, step attempts {self.attempts}, kills {kills}",
            f"steps run twice or more: {len(self.duplicates)}, every one in flight at a kill"
            if not self.problems
            else f"steps run twice or more: {len(self.duplicates)}",
        ]
        if self.duplicates:
            out.append(f"  of which {finished} had finished but were not yet recorded when killed")
        if self.unrecorded:
            out.append(
                f"  they had finished this long before the kill (s): {spread(self.unrecorded)}"
            )
        if self.recoveries:
            out.append(f"recovery after a kill (s): {spread(self.recoveries)}")
        if kills:
            out.append(f"kills that held no unfinished run: {self.idle_kills}")
        return out


def holders(ledger: Ledger, steps: int) -> set[int]:
    """The processes that wrote the latest line of a run not yet finished."""
    found: set[int] = set()
    for entries in ledger.by_run().values():
        latest = entries[-1]
        if not (latest.kind == "done" and latest.step == steps - 1):
            found.add(latest.pid)
    return found


def spread(values: Sequence[float]) -> str:
    ordered = sorted(values)
    return (
        f"min {ordered[0]:.2f}, median {statistics.median(ordered):.2f}, "
        f"max {ordered[-1]:.2f} (n={len(ordered)})"
    )


def check(
    ledger: Ledger,
    runs: Iterable[str],
    steps: int,
    kills: Sequence[Kill] = (),
    outages: Sequence[tuple[float, float]] = (),
) -> Report:
    """The figures of ``ledger`` for ``runs`` of ``steps`` steps, and every broken invariant.

    ``outages`` are the times the server was told to stop and was serving again: an
    attempt in flight then may run again, whichever process ran it (its outcome had
    nowhere to go), and so may one that started while the server was stopping."""
    wanted = list(runs)
    report = Report(runs=len(wanted), steps=len(wanted) * steps)
    killed = {kill.pid: kill for kill in kills}
    attempts = ledger.by_step()
    report.attempts = sum(1 for e in ledger.entries if e.kind == "start")
    strangers = sorted({run for run, _ in attempts} - set(wanted))
    if strangers:
        report.problems.append(f"ledger lines of runs never started: {strangers[:5]}")
    for run in wanted:
        for index in range(steps):
            entries = attempts.get((run, index), [])
            _check_step(report, run, index, entries, killed, outages)
    _recovery(report, ledger, steps, kills)
    return report


def _check_step(
    report: Report,
    run: str,
    index: int,
    entries: list[Entry],
    killed: dict[int, Kill],
    outages: Sequence[tuple[float, float]],
) -> None:
    starts = [e for e in entries if e.kind == "start"]
    if not starts:
        report.problems.append(f"run {run} step {index} never started: the run lost a step")
        return
    last = starts[-1]
    if not any(e.kind == "done" and e.pid == last.pid and e.at >= last.at for e in entries):
        report.problems.append(
            f"run {run} step {index}: its last attempt (process {last.pid}) never finished"
        )
    if len(starts) == 1:
        return
    finished_before_kill = False
    for earlier, later in itertools.pairwise(starts):
        kill = killed.get(earlier.pid)
        at = None if kill is None else kill.at
        if any(earlier.at < up and down <= later.at for down, up in outages):
            pass  # in flight when the server went down
        elif kill is None or kill.dead < earlier.at:
            report.problems.append(
                f"run {run} step {index} ran again although its attempt in process "
                f"{earlier.pid} (started {earlier.at:.3f}) was not in flight at a kill "
                f"({'never killed' if kill is None else f'dead at {kill.dead:.3f}, before it'})"
            )
        elif at is not None and later.at < at:
            report.problems.append(
                f"run {run} step {index} started again in process {later.pid} at "
                f"{later.at:.3f} while its attempt in process {earlier.pid} still ran "
                f"(killed only at {at:.3f}): two attempts at once"
            )
        done = [e for e in entries if e.kind == "done" and e.pid == earlier.pid]
        done = [e for e in done if e.at >= earlier.at]
        if done:
            finished_before_kill = True
            if at is not None:
                report.unrecorded.append(at - done[0].at)
    report.duplicates.append((run, index, finished_before_kill))


def _recovery(report: Report, ledger: Ledger, steps: int, kills: Sequence[Kill]) -> None:
    runs = ledger.by_run()
    for kill in kills:
        waits: list[float] = []
        for entries in runs.values():
            before = [e for e in entries if e.at <= kill.dead]
            if not before or before[-1].pid != kill.pid:
                continue
            latest = before[-1]
            if latest.kind == "done" and latest.step == steps - 1:
                continue  # finished: nothing held
            after = [e for e in entries if e.at > kill.at and e.pid != kill.pid]
            if after:
                waits.append(after[0].at - kill.at)
        if waits:
            report.recoveries.append(max(waits))
        else:
            report.idle_kills += 1
