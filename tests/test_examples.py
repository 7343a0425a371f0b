"""The example agents' paths, on the in-memory store: approve, edit, reject, expire."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable import DurableContext, DurableEventPayloadError, StepRecord, agent
from durable_agents.adapters.local import (
    InMemoryStore,
    decide_approval,
    pending_approvals,
    run_durable,
)
from durable_agents.adapters.local import _context as local_context
from durable_agents.adapters.local._store import utc_now
from durable_agents.examples.refund import LEDGER_ENV, RefundOutcome, RefundRequest, refund_review


async def _review(
    decision: str, order_id: str = "A-1001", **details: Any
) -> tuple[RefundOutcome, list[StepRecord]]:
    """A refund run decided by ``decision`` once it asks, and its steps."""
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
    while not (pending := await pending_approvals(store)):
        await asyncio.sleep(0.01)
    assert pending[0].action == "issue_refund"
    assert pending[0].input == {"amount_cents": 1_000}
    outcome = await decide_approval(store, "r", decision, decided_by="dana", **details)
    assert outcome.status == "decided"
    result = (await run).result
    assert isinstance(result, RefundOutcome)
    return result, await store.load_steps("r")


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger.jsonl"))
    return tmp_path / "ledger.jsonl"


def _paid(ledger: Path) -> list[int]:
    return [json.loads(line)["amount_cents"] for line in ledger.read_text().splitlines()]


async def test_an_approved_refund_is_paid_once(ledger: Path) -> None:
    outcome, steps = await _review("approve", reason="receipt checked")

    assert (outcome.status, outcome.amount_cents) == ("refunded", 1_000)
    assert (outcome.reviewer, outcome.review) == ("dana", "receipt checked")
    assert _paid(ledger) == [1_000]
    request, wait = (s for s in steps if s.step_index in (4, 5))
    assert (request.kind, request.intent) == ("approval", "approval:issue_refund")
    assert (wait.intent, wait.result["decided_by"]) == ("await_event:approval:4", "dana")


async def test_an_edited_refund_pays_the_edited_amount(ledger: Path) -> None:
    outcome, _ = await _review("edit", input={"amount_cents": 400}, reason="partial")

    assert (outcome.status, outcome.amount_cents, outcome.review) == ("refunded", 400, "partial")
    assert _paid(ledger) == [400]


async def test_an_edit_the_payout_type_refuses_leaves_the_run_asking(ledger: Path) -> None:
    store = InMemoryStore()
    request = RefundRequest(order_id="A-1001", amount_cents=1_000, reason="late")
    run = asyncio.create_task(
        run_durable(refund_review, request, store=store, run_id="r", poll_interval=0.01)
    )
    while not await pending_approvals(store):
        await asyncio.sleep(0.01)

    with pytest.raises(DurableEventPayloadError, match=r"\$\.amount_cents: 0 is less than"):
        await decide_approval(store, "r", "edit", decided_by="dana", input={"amount_cents": 0})
    assert [p.run_id for p in await pending_approvals(store)] == ["r"]  # still asking
    await decide_approval(store, "r", "reject", decided_by="dana", reason="asked twice")

    assert (await run).result.status == "declined"
    assert not ledger.exists()


async def test_a_rejected_refund_pays_nothing(ledger: Path) -> None:
    outcome, steps = await _review("reject", reason="no photos")

    assert (outcome.status, outcome.amount_cents) == ("declined", 0)
    assert (outcome.reviewer, outcome.review) == ("dana", "no photos")
    assert not ledger.exists()
    assert "issue the payout" not in [s.intent for s in steps]


async def test_a_refund_nobody_decides_in_four_hours_expires(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = InMemoryStore()
    request = RefundRequest(order_id="A-1001", amount_cents=1_000, reason="late")
    run = asyncio.create_task(
        run_durable(refund_review, request, store=store, run_id="r", poll_interval=0.01)
    )
    while not await pending_approvals(store):
        await asyncio.sleep(0.01)
    # The run's clock moves past the deadline it recorded when it began to wait.
    later = utc_now() + timedelta(hours=4, seconds=1)
    monkeypatch.setattr(local_context, "utc_now", lambda: later)
    outcome = (await run).result

    assert (outcome.status, outcome.reviewer) == ("expired", None)
    assert not ledger.exists()


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
    from durable_agents.activities import llm
    from durable_agents.examples.panel import Case, panel_review

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
