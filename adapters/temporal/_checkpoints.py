"""Context checkpoints on Temporal: payloads in the blob store, references in the memo.

A write puts the payload's canonical JSON in the blob store through a local
activity (``durable.put_checkpoint``) and keeps only its reference: a local
activity's input is never recorded, and its marker holds the reference, so
history grows by a reference per write, not by the payload. The run's map of
name to ``CheckpointInfo`` (the reference is its ``digest``) lives in the memo,
so callers read it with ``describe`` while the run goes on and after it closed,
no worker needed. A continue-as-new keeps the memo: an execution the agent
continued itself starts with the checkpoints as they are; one the run continued
by itself replays its carried positions, writes included, from the checkpoints
its chain of positions began with (``CHECKPOINTS_BASE_MEMO``).

A read answers from what this execution wrote (or replayed). Only a checkpoint an earlier
execution wrote is fetched (``durable.get_checkpoint``, a local activity whose
marker holds the payload once). A delete drops the name from the memo and
keeps the blob: blobs are shared by content, and another run may hold the same.

The workflow-side code here does no I/O; ``activities/checkpoints.py`` does, and
callers read checkpoints with ``_checkpoint_reads``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from durable import (
    CheckpointCalls,
    CheckpointInfo,
    DurableError,
    DurableStoreError,
    StepKind,
    StepRecord,
)
from durable._checkpoints import delete_intent, write_intent
from durable._failures import step_error_from
from durable_agents.adapters.blobs import BLOBS_ENV

from ._convert import activity_id, durable_error_from

__all__ = [
    "CHECKPOINTS_BASE_MEMO",
    "CHECKPOINTS_MEMO",
    "GET_CHECKPOINT_ACTIVITY",
    "PUT_CHECKPOINT_ACTIVITY",
    "TemporalCheckpoints",
]

CHECKPOINTS_MEMO = "checkpoints"
"""Memo key of the run's checkpoints: name -> ``CheckpointInfo`` as JSON."""
CHECKPOINTS_BASE_MEMO = "checkpoints_base"
"""Memo key of the checkpoints the run had when its current chain of positions began
(its start, or the agent's own continue-as-new): a replay of carried positions starts there."""
PUT_CHECKPOINT_ACTIVITY = "durable.put_checkpoint"
"""Local activity storing a checkpoint's canonical JSON; returns its blob reference."""
GET_CHECKPOINT_ACTIVITY = "durable.get_checkpoint"
"""Local activity returning the canonical JSON stored under a blob reference."""

T = TypeVar("T")

_BLOB_TIMEOUT = timedelta(seconds=30)
_BLOB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
"""A blob store that fails five times in three seconds fails the write, or the read."""


class TemporalCheckpoints(CheckpointCalls):
    """``TemporalContext``'s checkpoints.

    Positions follow ``TemporalReplay``: an execution continued as new by itself
    replays the carried positions, writes included, so its checkpoints start from
    those the run had when that chain of positions began (``CHECKPOINTS_BASE_MEMO``),
    and the replay rebuilds the rest exactly as the first execution saw it.
    """

    _checkpoints_start: dict[str, CheckpointInfo]

    if TYPE_CHECKING:
        _carried: list[StepRecord]
        _awaiting: int

        def _begin(
            self, intent: str, kind: StepKind, input_hash: str = "", deadline: Any = None
        ) -> int: ...
        def _finish(self, index: int, **changes: Any) -> None: ...
        async def _take(
            self, intent: str, kind: StepKind, input_hash: str = "", *, waits: bool = False
        ) -> StepRecord | None: ...
        def _outcome(self, record: StepRecord) -> StepRecord: ...
        def _raising(self, index: int, error: DurableError) -> DurableError: ...
        async def _arrival(self, key: int, awaitable: Awaitable[T]) -> T: ...

    def _init_checkpoints(self) -> None:
        """Fix what this execution's checkpoints start from; call once, at its start.

        An execution with fresh positions (the run's first, or one the agent
        continued as new itself) starts from the run's checkpoints as they are,
        and notes them as the base of its chain. One replaying carried positions
        starts from that base. A run that never wrote one changes no memo here.
        """
        current = _memo_map(CHECKPOINTS_MEMO)
        if self._carried:
            self._checkpoints_start = _memo_map(CHECKPOINTS_BASE_MEMO)
            return
        self._checkpoints_start = current
        if current and _memo_map(CHECKPOINTS_BASE_MEMO) != current:
            workflow.upsert_memo({CHECKPOINTS_BASE_MEMO: _memo_of(current)})

    async def _write_checkpoint(self, name: str, text: str, digest: str) -> CheckpointInfo:
        intent = write_intent(name)
        record = await self._take(intent, "checkpoint", digest, waits=True)
        if record is not None:
            return CheckpointInfo.model_validate(self._outcome(record).result)
        index = self._begin(intent, "checkpoint", digest)
        # The id carries the payload's hash: a replay that writes another payload is caught
        # by Temporal's own check of the marker, and reported as an input mismatch.
        put = self._blob_call(PUT_CHECKPOINT_ACTIVITY, text, activity_id(index, intent, digest))
        try:
            await self._arrival(index, put)  # the reference: the digest, as blobs are named
        except DurableError as error:
            self._finish(index, status="failed", error=step_error_from(error))
            raise self._raising(index, error) from None
        info = CheckpointInfo(
            name=name,
            step=index,
            size_bytes=len(text.encode("utf-8")),
            digest=digest,
            written_at=workflow.now(),
        )
        self._finish(index, status="completed", result=info.model_dump(mode="json"))
        return info

    async def _delete_checkpoint(self, name: str, existed: bool) -> bool:
        intent = delete_intent(name)
        record = await self._take(intent, "checkpoint")
        if record is not None:
            return bool(self._outcome(record).result["deleted"])
        index = self._begin(intent, "checkpoint")
        self._finish(index, status="completed", result={"deleted": existed})
        return existed

    def _carried_checkpoints(self) -> Mapping[str, CheckpointInfo]:
        return self._checkpoints_start

    async def _checkpoint_text(self, info: CheckpointInfo) -> str:
        # Not a position; counted as awaiting Temporal so the run never continues as new
        # while the fetch is under way.
        self._awaiting += 1
        try:
            return await self._blob_call(
                GET_CHECKPOINT_ACTIVITY, info.digest, f"checkpoint:{info.name}@{info.digest[:16]}"
            )
        finally:
            self._awaiting -= 1

    def _checkpoints_changed(self, known: Mapping[str, CheckpointInfo]) -> None:
        workflow.upsert_memo({CHECKPOINTS_MEMO: _memo_of(known)})

    async def _blob_call(self, activity: str, arg: str, call_id: str) -> str:
        try:
            result: str = await workflow.execute_local_activity(
                activity,
                arg,
                activity_id=call_id,
                start_to_close_timeout=_BLOB_TIMEOUT,
                retry_policy=_BLOB_RETRY,
                result_type=str,
            )
        except (ActivityError, ApplicationError) as failure:
            # A local activity's last failure may arrive as its own error, unwrapped.
            cause = failure.cause if isinstance(failure, ActivityError) else failure
            raise durable_error_from(cause, self.run_id) or DurableStoreError(
                f"the blob store failed for run {self.run_id!r} ({cause}); "
                f"check that every worker reaches the blob store ({BLOBS_ENV})"
            ) from None
        return result


def _memo_map(key: str) -> dict[str, CheckpointInfo]:
    raw = workflow.memo_value(key, {}, type_hint=dict[str, Any])
    return {name: CheckpointInfo.model_validate(info) for name, info in raw.items()}


def _memo_of(known: Mapping[str, CheckpointInfo]) -> dict[str, Any]:
    return {name: known[name].model_dump(mode="json") for name in sorted(known)}
