"""The conversation journals of every store: what they keep, and who wins a turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.local import DurableRunStore, FileStore, InMemoryStore, PostgresStore, SqliteStore
from durable.conversation import ConversationTurn, HaltReason

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _turn(index: int, text: str) -> ConversationTurn:
    return ConversationTurn(
        index=index, speaker="a", turn_id=f"r.t{index}.a", text=text, started_at=NOW, ended_at=NOW
    )


@pytest.fixture(params=["memory", "file", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DurableRunStore]:
    kind = request.param
    opened: DurableRunStore
    if kind == "memory":
        opened = InMemoryStore()
    elif kind == "file":
        opened = FileStore(tmp_path / "runs")
    elif kind == "sqlite":
        opened = SqliteStore(tmp_path / "db")
    else:
        opened = await PostgresStore.connect(request.getfixturevalue("postgres_dsn"))
    yield opened
    await opened.close()


async def test_a_journal_keeps_turns_in_order_and_the_halt(store: DurableRunStore) -> None:
    journal = store.journal
    run_id = f"conv-{id(store)}"
    assert await journal.load(run_id) is None
    await journal.begin(run_id, NOW)
    await journal.begin(run_id, datetime(2030, 1, 1, tzinfo=UTC))  # a no-op: it exists

    await journal.append_turn(run_id, _turn(0, "first"))
    await journal.append_turn(run_id, _turn(1, "second"))
    await journal.record_halt(run_id, HaltReason(kind="max_turns", turns=2), NOW)

    entry = await journal.load(run_id)
    assert entry is not None
    assert entry.started_at == NOW
    assert [t.text for t in entry.turns] == ["first", "second"]
    assert entry.halted == HaltReason(kind="max_turns", turns=2)


async def test_the_first_turn_recorded_at_an_index_wins(store: DurableRunStore) -> None:
    journal = store.journal
    run_id = f"race-{id(store)}"
    await journal.begin(run_id, NOW)
    await journal.append_turn(run_id, _turn(0, "from the worker that kept the run"))

    # A worker that lost the run mid-turn gets the recorded turn back, not its own.
    kept = await journal.append_turn(run_id, _turn(0, "from the worker that lost it"))

    assert kept.text == "from the worker that kept the run"
    entry = await journal.load(run_id)
    assert entry is not None
    assert [t.text for t in entry.turns] == ["from the worker that kept the run"]


async def test_a_file_stores_live_stream_refuses_a_position_it_never_gave(tmp_path: Path) -> None:
    from durable import LiveEvent

    store = FileStore(tmp_path / "runs")
    (tmp_path / "runs" / "r_run").mkdir(parents=True)
    await store.append_live("run", [LiveEvent(kind="token", step=0, offset=0, text="hello")])

    with pytest.raises(ValueError, match="after=3 is not a position in the live stream"):
        await store.read_live("run", after=3)
    await store.close()
