"""The SQL stores' part of a purge: find ended runs, delete them with their rows.

Ended runs are found through ``durable_runs_ended``. Deleting is one statement
per table, run ids in batches; the runs' own rows go last, so a purge cut short
leaves ended runs the next purge finishes, never steps or checkpoints of a run
that is gone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from durable import ENDED_STATUSES, RunRecord

from . import _sql as sql
from ._schema import ENDED_CLAUSE, Row
from ._store import PurgeCounts

__all__ = ["SqlPurge"]

_BATCH = 500
"""Run ids per statement: well below SQLite's limit on parameters."""
_TABLES = (
    ("steps", "durable_steps"),
    ("events", "durable_events"),
    ("live", "durable_live"),
    ("checkpoints", "durable_checkpoints"),
)


def _statuses(statuses: Collection[str]) -> str:
    chosen = sorted(set(statuses) & ENDED_STATUSES)
    # Only the fixed names of ended states reach the statement, never caller text.
    return ", ".join(f"'{status}'" for status in chosen) or "NULL"


class SqlPurge:
    """The purge methods of ``DurableRunStore`` for ``SqlStore``."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]: ...
        async def _execute(self, sql: str, params: Sequence[Any]) -> int: ...

    async def list_purgeable_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[str],
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        params: list[Any] = [sql._ms(ended_before)]
        later = ""
        if after is not None:
            later = "AND (completed_at > ? OR (completed_at = ? AND run_id > ?)) "
            params += [sql._ms(after[0]), sql._ms(after[0]), after[1]]
        rows = await self._fetch(
            f"SELECT {sql._RUN_COLUMNS} FROM durable_runs WHERE {ENDED_CLAUSE} "
            f"AND status IN ({_statuses(statuses)}) AND completed_at < ? {later}"
            "AND (parent_run_id IS NULL OR NOT EXISTS (SELECT 1 FROM durable_runs parent "
            "WHERE parent.run_id = durable_runs.parent_run_id)) "
            "ORDER BY completed_at, run_id LIMIT ?",
            (*params, limit),
        )
        return [sql._run_record(row) for row in rows]

    async def delete_runs(self, run_ids: Sequence[str]) -> PurgeCounts:
        counts = PurgeCounts()
        for start in range(0, len(run_ids), _BATCH):
            counts += await self._delete_batch(run_ids[start : start + _BATCH])
        return counts

    async def _delete_batch(self, run_ids: Sequence[str]) -> PurgeCounts:
        marks = ", ".join("?" * len(run_ids))
        # An ended run becomes active again only when started again (retry_failed), which
        # discards its records itself: every statement below holds only while it is ended.
        rows = await self._fetch(
            f"SELECT run_id FROM durable_runs WHERE run_id IN ({marks}) AND {ENDED_CLAUSE}", run_ids
        )
        ended = [row[0] for row in rows]
        if not ended:
            return PurgeCounts()
        marks = ", ".join("?" * len(ended))
        removed: dict[str, int] = {}
        for field, table in _TABLES:
            removed[field] = await self._execute(
                f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM durable_runs "
                f"WHERE run_id IN ({marks}) AND {ENDED_CLAUSE})",
                ended,
            )
        removed["runs"] = await self._execute(
            f"DELETE FROM durable_runs WHERE run_id IN ({marks}) AND {ENDED_CLAUSE}", ended
        )
        return PurgeCounts(**removed)
