"""Patches, written once: ``ctx.patched`` lets agent code change under runs in flight.

A run waits for days, and the code it replays changes under it. Code that takes
a new path puts it behind ``await ctx.patched("change-id")``, which is ``True``
for a run that reaches the call fresh (past every position it had recorded) and
``False`` for a run that had already gone past that point with the code before
the change. That run replays the old path, so its recorded positions still
match, and the runs started since take the new one.

The first answer for a change id is final for the run: ``True`` is recorded as
a marker with the run, so a resume answers the same; ``False`` needs no marker,
since the run's recorded positions answer it again. Later calls with the same id
answer the same without asking. A marker takes no position, so positions, and
the ids made from them (approvals, child runs, activities), are the same with or
without a patch, and on both substrates.

Once no run from before the change is in flight (``durable check-compat`` says
so), the old path goes: ``await ctx.deprecate_patch("change-id")`` replaces the
``if``, and answers as if every run had taken the change. When no run that
recorded the marker is in flight either, the call itself can go.

Each substrate supplies ``_take_patch`` (the first answer for an id: the marker,
else whether the run is replaying a position it recorded) and ``_deprecate``.
"""

from __future__ import annotations

from ._names import check_name

__all__ = ["PATCH_KEY_PREFIX", "Patches", "check_event_key", "patch_key"]

PATCH_KEY_PREFIX = "patch:"
"""Event keys a local run's patch markers are kept under; refused as an agent's own keys."""


def patch_key(change_id: str) -> str:
    """The key of the marker that says a local run took the change ``change_id``."""
    return f"{PATCH_KEY_PREFIX}{change_id}"


def check_event_key(key: object) -> str:
    """``key`` if an agent or a sender may use it as an event key, else ``ValueError``."""
    checked = check_name(key, what="event key")
    if checked.startswith(PATCH_KEY_PREFIX):
        raise ValueError(
            f"event key {checked!r} is reserved: keys starting with {PATCH_KEY_PREFIX!r} "
            "record the code changes a run took (ctx.patched); choose another key"
        )
    return checked


class Patches:
    """The patch half of ``DurableContext``, shared by every substrate's context."""

    _patches: dict[str, bool]

    def _init_patches(self) -> None:
        self._patches = {}
        """The answer given for each change id this execution asked about."""

    async def _take_patch(self, change_id: str) -> bool:
        """Whether the run takes ``change_id``, asked once per id: ``True`` is recorded."""
        raise NotImplementedError

    def _deprecate(self, change_id: str) -> None:
        """Record, where the substrate needs it, that the old path of ``change_id`` is gone."""

    async def patched(self, change_id: str) -> bool:
        """Whether this run takes the change ``change_id``.

        ``True`` for a run that reaches this call fresh, ``False`` for one that had
        already gone past it with the code before the change; the same answer on
        every replay and for every later call with this id.
        """
        check_name(change_id, what="patch id")
        answer = self._patches.get(change_id)
        if answer is None:
            answer = self._patches[change_id] = await self._take_patch(change_id)
        return answer

    async def deprecate_patch(self, change_id: str) -> None:
        """Mark the old path of ``change_id`` gone: every run now takes the change.

        Call it where ``if await ctx.patched(change_id)`` was, once no run recorded
        before the change is in flight; ``patched(change_id)`` then answers ``True``.
        """
        check_name(change_id, what="patch id")
        self._patches[change_id] = True
        self._deprecate(change_id)
