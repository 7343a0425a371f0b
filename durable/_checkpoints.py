"""Context checkpoints, written once: ``ctx.checkpoints.write / list / read / delete``.

A checkpoint is a named JSON snapshot of an agent's working context (a compacted
transcript, a plan, what it learned so far), kept with the run and readable
from outside it while it runs and after it ends (seed 004's context
checkpoints, keyed by name).

How each operation behaves on replay, on every substrate:

- ``write`` and ``delete`` take a position each (kind ``checkpoint``, intent
  ``checkpoint:<name>`` and ``delete_checkpoint:<name>``). A replay returns the
  recorded outcome and writes nothing; a write's input fingerprint is the
  payload's hash, so a replay that writes another payload at that position
  raises ``DurableStepInputMismatchError``.
- ``list`` and ``read`` take no position: they answer from the run's own record
  of its writes and deletes, which a replay rebuilds as it passes them. So they
  return on replay exactly what they returned the first time, whatever the
  store holds by then (a write an interrupted execution made further on, say).

Each substrate provides only the storage: ``_write_checkpoint`` and
``_delete_checkpoint`` (a position each), and, where an execution can start
with checkpoints an earlier execution wrote (Temporal after continue-as-new),
``_carried_checkpoints`` and ``_checkpoint_text``.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from ._canonical import canonical_json
from ._codec import JsonCodec, check_size
from ._errors import (
    DurableCheckpointNotFoundError,
    DurableNonCanonicalValueError,
    DurablePayloadTooLargeError,
)
from ._names import check_name

__all__ = [
    "MAX_CHECKPOINT_NAME",
    "Checkpoint",
    "CheckpointCalls",
    "CheckpointInfo",
    "ContextCheckpoints",
    "checkpoint_not_found",
    "checkpoint_text",
    "delete_intent",
    "write_intent",
]

T = TypeVar("T")

MAX_CHECKPOINT_NAME = 200
"""Longest checkpoint name: its intent (``delete_checkpoint:<name>``) must fit a step's."""


class CheckpointInfo(BaseModel):
    """One checkpoint as listed: everything but its payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    step: int = Field(ge=0)
    """The position of the write that made it."""
    size_bytes: int = Field(ge=0)
    """UTF-8 bytes of its canonical JSON."""
    digest: str
    """sha256 of its canonical JSON; on Temporal also its blob reference."""
    written_at: datetime


class Checkpoint(CheckpointInfo):
    """One checkpoint read from outside its run, payload included."""

    payload: Any = None

    @classmethod
    def of(cls, info: CheckpointInfo, text: str) -> Checkpoint:
        """``info`` with the payload its canonical JSON ``text`` holds."""
        return cls(**dict(info), payload=json.loads(text))


def write_intent(name: str) -> str:
    return f"checkpoint:{name}"


def delete_intent(name: str) -> str:
    return f"delete_checkpoint:{name}"


def _check_checkpoint_name(name: object) -> str:
    check_name(name, what="checkpoint name")
    assert isinstance(name, str)
    if len(name) > MAX_CHECKPOINT_NAME:
        raise ValueError(
            f"checkpoint name is {len(name)} characters long; keep it to "
            f"{MAX_CHECKPOINT_NAME} and put long data in the payload instead"
        )
    return name


def checkpoint_text(name: str, payload: object) -> str:
    """The canonical JSON a checkpoint stores, or the error that refuses ``payload``.

    A pydantic model is taken in its JSON form; anything else must already be
    plain JSON (dicts with string keys, lists, strings, finite numbers,
    booleans, ``None``), else ``DurableNonCanonicalValueError`` names where it
    is not. Over ``MAX_PAYLOAD_BYTES`` raises ``DurablePayloadTooLargeError``.
    """
    what = f"the payload of checkpoint {name!r}"
    value = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    try:
        text = canonical_json(value)
    except DurableNonCanonicalValueError as exc:
        raise DurableNonCanonicalValueError(f"{what} is not JSON: {exc.message}") from None
    except RecursionError:
        raise DurablePayloadTooLargeError(
            f"{what} nests containers too deeply to store; flatten it (a list of records "
            "rather than a chain of nested ones)"
        ) from None
    check_size(text, what=what)
    return text


def checkpoint_not_found(run_id: str, name: str) -> DurableCheckpointNotFoundError:
    return DurableCheckpointNotFoundError(
        f"run {run_id!r} has no checkpoint {name!r} (never written, or deleted); write it "
        f"first, or see the run's checkpoints with `durable checkpoints {run_id}`",
        run_id=run_id,
        name=name,
    )


class ContextCheckpoints:
    """``ctx.checkpoints``: the run's named JSON snapshots of its working context.

    Operations run one at a time, in the order they are called, so a name's
    last write or delete is the one a later ``read`` and the store both see.
    """

    def __init__(self, host: CheckpointCalls) -> None:
        self._host = host
        self._known: dict[str, CheckpointInfo] = dict(host._carried_checkpoints())
        self._texts: dict[str, str] = {}
        """Payloads this execution wrote or read, as canonical JSON."""
        self._turn = asyncio.Lock()

    async def write(self, name: str, payload: object) -> CheckpointInfo:
        """Store ``payload`` as checkpoint ``name``, replacing any earlier one.

        Refused before anything is recorded: a payload that is not JSON
        (``non_canonical_value``) or over ``MAX_PAYLOAD_BYTES``
        (``payload_too_large``), a name that is not a usable name (``ValueError``).
        """
        _check_checkpoint_name(name)
        text = checkpoint_text(name, payload)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        async with self._turn:
            info = await self._host._write_checkpoint(name, text, digest)
            self._known[name] = info
            self._texts[name] = text
            self._host._checkpoints_changed(self._known)
        return info

    async def list(self) -> builtins.list[CheckpointInfo]:
        """The run's checkpoints, by name."""
        return [self._known[name] for name in sorted(self._known)]

    @overload
    async def read(self, name: str) -> Any: ...
    @overload
    async def read(self, name: str, *, type: builtins.type[T]) -> T: ...
    async def read(self, name: str, *, type: Any = None) -> Any:
        """The payload of checkpoint ``name``, validated as ``type`` when given.

        Raises ``DurableCheckpointNotFoundError`` when the run has no such
        checkpoint (never written, or deleted).
        """
        _check_checkpoint_name(name)
        async with self._turn:
            info = self._known.get(name)
            if info is None:
                raise checkpoint_not_found(self._host.run_id, name)
            text = self._texts.get(name)
            if text is None:
                text = await self._host._checkpoint_text(info)
                self._texts[name] = text
        data = json.loads(text)  # a fresh copy each time: the caller may change it
        if type is None:
            return data
        codec: JsonCodec[Any] = JsonCodec(type)
        return codec.decode(data, what=f"checkpoint {name!r} of run {self._host.run_id!r}")

    async def delete(self, name: str) -> bool:
        """Remove checkpoint ``name``; ``False`` when the run had none of that name."""
        _check_checkpoint_name(name)
        async with self._turn:
            deleted = await self._host._delete_checkpoint(name, name in self._known)
            self._known.pop(name, None)
            self._texts.pop(name, None)
            self._host._checkpoints_changed(self._known)
        return deleted


class CheckpointCalls:
    """The checkpoint half of ``DurableContext``, shared by every substrate's context."""

    _checkpoints_face: ContextCheckpoints | None = None

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    @property
    def checkpoints(self) -> ContextCheckpoints:
        """The run's context checkpoints (``write``, ``list``, ``read``, ``delete``)."""
        if self._checkpoints_face is None:
            self._checkpoints_face = ContextCheckpoints(self)
        return self._checkpoints_face

    # -- what each substrate provides --------------------------------------

    async def _write_checkpoint(self, name: str, text: str, digest: str) -> CheckpointInfo:
        """Take the next position; store ``text`` unless this position replays."""
        raise NotImplementedError

    async def _delete_checkpoint(self, name: str, existed: bool) -> bool:
        """Take the next position; remove ``name`` unless this position replays.

        Returns what the position recorded: ``existed`` on its first execution.
        """
        raise NotImplementedError

    def _carried_checkpoints(self) -> Mapping[str, CheckpointInfo]:
        """Checkpoints an earlier execution of this run left: none, unless the
        substrate starts a run over in a new execution (Temporal's continue-as-new)."""
        return {}

    async def _checkpoint_text(self, info: CheckpointInfo) -> str:
        """The stored JSON of a carried checkpoint; only carried ones are ever fetched."""
        raise NotImplementedError

    def _checkpoints_changed(self, known: Mapping[str, CheckpointInfo]) -> None:
        """The run's checkpoints after a write or delete (Temporal keeps them in its memo)."""
        return None
