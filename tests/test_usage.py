"""Run totals of model calls: unknown usage stays unknown, never 0."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from durable import StepRecord, usage_line, usage_totals


def _call(index: int, usage: dict[str, Any]) -> StepRecord:
    return StepRecord(
        run_id="r", step_index=index, intent="ask", kind="llm", status="completed",
        input_hash="h", result={"usage": usage}, attempts=1, started_at=datetime.now(UTC),
    )  # fmt: skip


def test_one_call_of_unknown_usage_makes_the_total_unknown() -> None:
    known = {"input_tokens": 12, "output_tokens": 3, "cost": 0.01}
    unknown = {"input_tokens": None, "output_tokens": None, "cost": None}

    assert usage_totals([_call(0, known), _call(1, known)]) == {
        "input_tokens": 24, "output_tokens": 6, "cost": 0.02,
    }  # fmt: skip
    totals = usage_totals([_call(0, known), _call(1, unknown), _call(2, known)])
    assert totals == {"input_tokens": None, "output_tokens": None, "cost": None}


def test_the_line_for_people_says_unknown_not_zero() -> None:
    line = usage_line({"input_tokens": None, "output_tokens": None, "cost": None})

    assert "model calls: unknown tokens in, unknown out, cost unknown" in line
    assert "stream to false" in line
    assert usage_line({"input_tokens": 24, "output_tokens": 6, "cost": 0.02}) == (
        "model calls: 24 tokens in, 6 out, cost 0.02"
    )
