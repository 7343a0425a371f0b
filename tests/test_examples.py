"""The example agent's paths, on the in-memory store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.local import InMemoryStore, run_durable
from durable import DurableContext, agent
from examples.refund import LEDGER_ENV, RefundRequest, refund_review


async def _review(approval: dict[str, object], order_id: str = "A-1001") -> object:
    store = InMemoryStore()
    run = asyncio.create_task(
        run_durable(
            refund_review,
            RefundRequest(order_id=order_id, amount_cents=1_000, reason="late"),
            store=store,
            run_id="r",
            poll_interval=0.01,
        )
    )
    while not any(s.intent == "await_event:approval" for s in await store.load_steps("r")):
        await asyncio.sleep(0.01)
    await store.emit_event("r", "approval", approval)
    return (await run).result


async def test_an_approved_refund_is_paid_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger.jsonl"))

    outcome = await _review({"approved": True, "reviewer": "dana"})

    assert outcome.status == "refunded"  # type: ignore[attr-defined]
    assert len((tmp_path / "ledger.jsonl").read_text().splitlines()) == 1


async def test_a_declined_refund_pays_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger.jsonl"))

    outcome = await _review({"approved": False, "reviewer": "sam", "note": "no photos"})

    assert outcome.status == "declined"  # type: ignore[attr-defined]
    assert not (tmp_path / "ledger.jsonl").exists()


async def test_the_local_context_implements_the_protocol() -> None:
    store = InMemoryStore()
    result = await run_durable(_context_type, {}, store=store, run_id="ctx")
    assert result.result == "LocalContext"


@agent(name="tests.examples.context_type")
async def _context_type(ctx: DurableContext, _: dict[str, object]) -> str:
    assert isinstance(ctx, DurableContext)
    return type(ctx).__name__


async def test_the_review_panel_converses_with_the_scripted_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from activities import llm
    from examples.panel import Case, panel_review

    monkeypatch.setattr(llm, "SCRIPTED_PACE", 0.0)
    monkeypatch.delenv("DURABLE_DEFAULT_MODEL", raising=False)
    store = InMemoryStore()

    result = await run_durable(panel_review, Case(summary="a late parcel"), store=store, run_id="p")

    conversation = result.result
    assert [t.speaker for t in conversation.transcript] == [
        "advocate", "auditor", "advocate", "auditor"
    ]  # fmt: skip
    assert conversation.halted.kind == "max_turns"
    assert conversation.transcript[0].text == "[scripted model] You said: a late parcel"
