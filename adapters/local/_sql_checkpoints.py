"""The SQL stores' context checkpoints: one row per checkpoint in ``durable_checkpoints``.

A write is one upsert whose ``SELECT`` carries the lease fence, as ``begin_step``
does, so a worker that lost its lease changes nothing and learns it from the row
count. Names are sorted in Python: the two databases collate text differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from durable import Checkpoint, CheckpointInfo, Lease

from . import _sql as sql
from ._schema import Row

__all__ = ["SqlCheckpoints"]

_INFO = "name, step_index, size_bytes, digest, written_at"


def _info(row: Row) -> CheckpointInfo:
    return CheckpointInfo(
        name=row[0], step=row[1], size_bytes=row[2], digest=row[3], written_at=sql._at(row[4])
    )


class SqlCheckpoints:
    """The checkpoint methods of ``DurableRunStore`` for ``SqlStore``."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]: ...
        async def _execute(self, sql: str, params: Sequence[Any]) -> int: ...
        async def _explain(self, lease: Lease, *, step_index: int | None = None) -> Exception: ...

    async def write_checkpoint(self, lease: Lease, info: CheckpointInfo, text: str) -> None:
        written = await self._execute(
            f"INSERT INTO durable_checkpoints (run_id, {_INFO}, payload) "
            f"SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS INTEGER), "
            f"CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT) "
            f"WHERE {sql._FENCE} ON CONFLICT (run_id, name) DO UPDATE SET "
            f"step_index = excluded.step_index, size_bytes = excluded.size_bytes, "
            f"digest = excluded.digest, written_at = excluded.written_at, "
            f"payload = excluded.payload",
            (
                lease.run_id,
                info.name,
                info.step,
                info.size_bytes,
                info.digest,
                sql._ms(info.written_at),
                text,
                *sql._fence(lease),
            ),
        )
        if not written:
            raise await self._explain(lease)

    async def delete_checkpoint(self, lease: Lease, name: str) -> bool:
        deleted = await self._execute(
            f"DELETE FROM durable_checkpoints WHERE run_id = ? AND name = ? AND {sql._FENCE}",
            (lease.run_id, name, *sql._fence(lease)),
        )
        if deleted:
            return True
        if not await self._fetch(f"SELECT 1 WHERE {sql._FENCE}", sql._fence(lease)):
            raise await self._explain(lease)
        return False

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        rows = await self._fetch(
            f"SELECT {_INFO} FROM durable_checkpoints WHERE run_id = ?", (run_id,)
        )
        return sorted(map(_info, rows), key=lambda info: info.name)

    async def read_checkpoint(self, run_id: str, name: str) -> Checkpoint | None:
        rows = await self._fetch(
            f"SELECT {_INFO}, payload FROM durable_checkpoints WHERE run_id = ? AND name = ?",
            (run_id, name),
        )
        return Checkpoint.of(_info(rows[0]), rows[0][5]) if rows else None
