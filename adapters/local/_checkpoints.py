"""Context checkpoints of a local run: a position each, the payload in the store.

The rules live once in ``durable._checkpoints``; this is only the storage. A
write records its checkpoint in the store and then completes its position, both
under the lease: a worker that dies in between leaves the position running, and
the run's next execution writes the same payload again.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from durable import CheckpointCalls, CheckpointInfo, Lease, StepKind, StepRecord
from durable._checkpoints import delete_intent, write_intent

from ._store import DurableRunStore, utc_now

__all__ = ["LocalCheckpoints"]

T = TypeVar("T")


class LocalCheckpoints(CheckpointCalls):
    """``LocalContext``'s checkpoints."""

    if TYPE_CHECKING:
        _store: DurableRunStore
        lease: Lease

        def _position(
            self, intent: str, kind: StepKind, input_hash: str
        ) -> tuple[int, StepRecord | None]: ...
        async def _begin(
            self,
            index: int,
            intent: str,
            kind: StepKind,
            input_hash: str = "",
            deadline: datetime | None = None,
        ) -> datetime | None: ...
        async def _complete(self, index: int, result: Any) -> None: ...
        async def _fenced(self, write: Awaitable[T]) -> T: ...

    async def _write_checkpoint(self, name: str, text: str, digest: str) -> CheckpointInfo:
        intent = write_intent(name)
        index, record = self._position(intent, "checkpoint", digest)
        if record is not None and record.status == "completed":
            return CheckpointInfo.model_validate(record.result)
        await self._begin(index, intent, "checkpoint", digest)
        now = utc_now()
        info = CheckpointInfo(
            name=name,
            step=index,
            size_bytes=len(text.encode("utf-8")),
            digest=digest,
            # Milliseconds, as every store keeps times: the run and its readers agree.
            written_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
        )
        await self._fenced(self._store.write_checkpoint(self.lease, info, text))
        await self._complete(index, info.model_dump(mode="json"))
        return info

    async def _delete_checkpoint(self, name: str, existed: bool) -> bool:
        intent = delete_intent(name)
        index, record = self._position(intent, "checkpoint", "")
        if record is not None and record.status == "completed":
            return bool(record.result["deleted"])
        await self._begin(index, intent, "checkpoint")
        await self._fenced(self._store.delete_checkpoint(self.lease, name))
        await self._complete(index, {"deleted": existed})
        return existed
