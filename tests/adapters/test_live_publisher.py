"""A local run's live publisher: entries share writes, tokens and ``flush`` go at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from durable import LiveEvent
from durable_agents.adapters.local import DurableRunStore, InMemoryStore, LivePublisher
from durable_agents.adapters.local import _live as live_module
from tests.support.leases import hold

A_LONG_WINDOW = 3600.0
"""A coalescing window no test waits out: anything written meanwhile was not held by it."""


@pytest.fixture
def long_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries wait for others far longer than any test: a write that comes was not held."""
    monkeypatch.setattr(live_module, "COALESCE", A_LONG_WINDOW)


async def _publishing(store: DurableRunStore) -> LivePublisher:
    """A publisher for run ``r``, which ``store`` then holds."""
    await hold(store)
    return LivePublisher(store, "r")


def _started(step: int) -> LiveEvent:
    return LiveEvent(kind="step_started", step=step, intent="work", attempt=1)


async def _eventually(store: DurableRunStore, count: int) -> list[LiveEvent]:
    """The run's entries once there are ``count``; fails after 5 s without them."""
    async with asyncio.timeout(5):
        while len(entries := await store.read_live("r")) < count:
            await asyncio.sleep(0.01)
    return entries


async def test_entries_published_together_reach_the_store_in_order(
    store: DurableRunStore,
) -> None:
    publisher = await _publishing(store)
    for step in range(3):
        publisher.publish(_started(step))
    entries = await _eventually(store, 3)
    assert [e.step for e in entries] == [0, 1, 2]
    assert all(e.at is not None for e in entries)  # stamped when published


@pytest.mark.usefixtures("long_window")
async def test_flush_writes_at_once_instead_of_waiting_out_the_window(
    store: DurableRunStore,
) -> None:
    publisher = await _publishing(store)
    publisher.publish(_started(0))
    await asyncio.sleep(0)
    assert publisher._window is not None  # the writer is waiting in its window
    async with asyncio.timeout(5):
        await publisher.flush()
    assert [e.step for e in await store.read_live("r")] == [0]


@pytest.mark.usefixtures("long_window")
async def test_flush_before_the_writer_began_skips_the_window() -> None:
    store = InMemoryStore()
    publisher = await _publishing(store)
    publisher.publish(_started(0))  # its writer has not run yet: it has no window to cut
    async with asyncio.timeout(5):
        await publisher.flush()
    assert len(await store.read_live("r")) == 1


class _Counting(InMemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        self.writes.append(len(events))
        await super().append_live(run_id, events)


@pytest.mark.usefixtures("long_window")
async def test_entries_published_within_the_window_share_one_write() -> None:
    store = _Counting()
    publisher = await _publishing(store)
    for step in range(3):
        publisher.publish(_started(step))
        await asyncio.sleep(0)
    await publisher.flush()
    assert store.writes == [3]


@pytest.mark.usefixtures("long_window")
async def test_flush_writes_what_a_cancelled_writer_left() -> None:
    store = InMemoryStore()
    publisher = await _publishing(store)
    publisher.publish(_started(0))
    await asyncio.sleep(0)
    writer = publisher._writer
    assert writer is not None
    writer.cancel()  # as the loop's shutdown does
    await asyncio.gather(writer, return_exceptions=True)
    async with asyncio.timeout(5):
        await publisher.flush()
    assert len(await store.read_live("r")) == 1


@pytest.mark.usefixtures("long_window")
async def test_a_token_is_written_without_waiting_for_the_window() -> None:
    store = InMemoryStore()
    publisher = await _publishing(store)
    publisher.publish(LiveEvent(kind="token", step=0, offset=0, text="Hel"))
    entries = await _eventually(store, 1)
    assert entries[0].text == "Hel"


async def test_entries_after_a_flush_wait_for_their_window_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryStore()
    publisher = await _publishing(store)
    publisher.publish(_started(0))
    await publisher.flush()
    await publisher.flush()  # with nothing pending, it leaves no hurry behind
    monkeypatch.setattr(live_module, "COALESCE", A_LONG_WINDOW)
    publisher.publish(_started(1))
    await asyncio.sleep(0.05)
    assert len(await store.read_live("r")) == 1  # the second entry is still in its window
    async with asyncio.timeout(5):
        await publisher.flush()
    assert len(await store.read_live("r")) == 2


class _Refusing(InMemoryStore):
    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        raise OSError("disk full")


async def test_a_failed_write_is_logged_once_and_never_reaches_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _Refusing()
    publisher = await _publishing(store)
    with caplog.at_level(logging.WARNING, logger="durable.local"):
        for step in range(2):
            publisher.publish(_started(step))
            await publisher.flush()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["run 'r': writing its live stream failed; watchers miss entries"]
