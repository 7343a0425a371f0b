"""A refund review agent: look up the order, draft a decision, ask a person, pay out.

The order catalogue and payout ledger are stand-ins for real services; what is
real is the durability. Every step is checkpointed; the payout is a typed
approval (``ctx.approval``) with a durable four-hour deadline, which a reviewer
approves, edits (a validated ``Payout``) or rejects; and the payout uses a
checkpointed reference, so it is recorded once even if the worker dies and
another one finishes the run.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from durable import (
    ApprovalRequest,
    DurableAwaitEventTimeoutError,
    DurableContext,
    RetryPolicy,
    agent,
    step,
)
from durable_agents.activities.llm import DEFAULT_MODEL, chat

LEDGER_ENV = "REFUND_LEDGER"
"""Environment variable naming the JSONL file payouts are appended to."""


class RefundRequest(BaseModel):
    order_id: str
    amount_cents: int = Field(gt=0)
    reason: str


class Order(BaseModel):
    order_id: str
    customer: str
    total_cents: int
    days_since_delivery: int


class Decision(BaseModel):
    recommend: bool
    amount_cents: int
    rationale: str


class Payout(BaseModel):
    """What the reviewer approves, and may edit: the amount to pay back."""

    amount_cents: int = Field(gt=0)


class RefundOutcome(BaseModel):
    status: Literal["refunded", "declined", "expired"]
    amount_cents: int
    reviewer: str | None
    reference: str
    decided_at: datetime
    note: str = ""
    """The model's note for the reviewer."""
    review: str | None = None
    """The reviewer's reason, as given with the decision."""


_ORDERS = {
    "A-1001": Order(
        order_id="A-1001", customer="ada@example.com", total_cents=4_999, days_since_delivery=3
    ),
    "A-1002": Order(
        order_id="A-1002", customer="alan@example.com", total_cents=12_000, days_since_delivery=45
    ),
}


@step(timeout=10, retry=RetryPolicy(maximum_attempts=3))
async def look_up_order(order_id: str) -> Order:
    order = _ORDERS.get(order_id)
    if order is None:
        raise LookupError(f"no order {order_id!r}")
    return order


@step(timeout=10)
async def draft_decision(order: Order, request: RefundRequest) -> Decision:
    if request.amount_cents > order.total_cents:
        return Decision(recommend=False, amount_cents=0, rationale="more than the order total")
    if order.days_since_delivery > 30:
        return Decision(
            recommend=False, amount_cents=0, rationale="outside the 30-day refund window"
        )
    return Decision(recommend=True, amount_cents=request.amount_cents, rationale="within policy")


def _append_once(ledger: Path, entry: dict[str, object]) -> None:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    if ledger.exists() and any(
        json.loads(line)["reference"] == entry["reference"]
        for line in ledger.read_text().splitlines()
    ):
        return
    with ledger.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


@step(timeout=30, retry=RetryPolicy(maximum_attempts=5))
async def issue_payout(order_id: str, amount_cents: int, reference: str) -> str:
    """Append the payout to the ledger once per reference (an idempotency key)."""
    ledger = Path(os.environ.get(LEDGER_ENV, "data/refunds.jsonl"))
    entry = {"reference": reference, "order_id": order_id, "amount_cents": amount_cents}
    await asyncio.to_thread(_append_once, ledger, entry)
    return reference


@agent(name="refund_review")
async def refund_review(ctx: DurableContext, request: RefundRequest) -> RefundOutcome:
    """Review a refund request with a human in the loop."""
    order = await ctx.step("look up the order", look_up_order, request.order_id)
    draft = await ctx.step("draft a decision", draft_decision, order, request)
    note = await chat(
        ctx,
        "write the note for the reviewer",
        model=DEFAULT_MODEL,  # the worker decides which model that is
        messages=[
            {"role": "system", "content": "Write one sentence for a refund reviewer."},
            {"role": "user", "content": f"{request.reason}; policy says: {draft.rationale}"},
        ],
    )
    reference = str(await ctx.uuid())
    proposed = Payout(amount_cents=draft.amount_cents or request.amount_cents)
    try:
        decision = await ctx.approval(
            ApprovalRequest(
                action="issue_refund",
                input=proposed,
                summary=(
                    f"refund {proposed.amount_cents / 100:.2f} on order {order.order_id} to "
                    f"{order.customer} ({draft.rationale}); {note.text}"
                ),
                tool="issue_payout",
            ),
            timeout=timedelta(hours=4),
            on_timeout="raise",
        )
    except DurableAwaitEventTimeoutError:
        return RefundOutcome(
            status="expired",
            amount_cents=0,
            reviewer=None,
            reference=reference,
            decided_at=await ctx.now(),
        )
    if not decision.approved:
        return RefundOutcome(
            status="declined",
            amount_cents=0,
            reviewer=decision.decided_by,
            reference=reference,
            decided_at=await ctx.now(),
            review=decision.reason,
        )
    amount = decision.input.amount_cents  # as proposed, or as the reviewer edited it
    await ctx.step("issue the payout", issue_payout, order.order_id, amount, reference)
    return RefundOutcome(
        status="refunded",
        amount_cents=amount,
        reviewer=decision.decided_by,
        reference=reference,
        decided_at=await ctx.now(),
        note=note.text,
        review=decision.reason,
    )
