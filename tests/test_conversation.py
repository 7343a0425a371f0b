"""The substrate-free rules of conversations: definitions, turn ids, the driver, the breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from durable import DurableRegistrationError
from durable.conversation import (
    Breaker,
    CallPolicy,
    ConversationDriver,
    ConversationPolicy,
    ConversationTurn,
    Participant,
    TurnUsage,
    conversation_definition,
    define_conversation,
    slugify_speaker,
    turn_id,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
A = Participant(name="a", model="m")
B = Participant(name="b", model="m")
C = Participant(name="c", model="m")


def _turn(index: int, speaker: str, cost: float = 0.0) -> ConversationTurn:
    return ConversationTurn(
        index=index, speaker=speaker, turn_id=f"t{index}", text="x",
        usage=TurnUsage(cost=cost), started_at=NOW, ended_at=NOW,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("participants", "policy", "message"),
    [
        ([A, A], ConversationPolicy(max_turns=2), r"names participant\(s\) \['a'\] more than once"),
        ([A, B, C], ConversationPolicy(max_turns=2, turn_order="alternate"), "exactly two"),
        ([A, B], ConversationPolicy(max_turns=0), "max_turns=0; it must be at least 1"),
        ([], ConversationPolicy(max_turns=1), "at least one participant"),
        ([A, B], ConversationPolicy(max_turns=1, turn_order="random"), "use 'alternate'"),  # type: ignore[arg-type]
    ],
)
def test_a_misconfigured_conversation_is_refused_at_definition(
    participants: list[Participant], policy: ConversationPolicy, message: str
) -> None:
    with pytest.raises(DurableRegistrationError, match=message):
        define_conversation("unit.bad", participants=participants, policy=policy)


def test_a_participant_needs_exactly_one_backend() -> None:
    with pytest.raises(ValidationError, match="exactly one of model="):
        Participant(name="nobody")
    with pytest.raises(ValidationError, match="exactly one of model="):
        Participant(name="both", model="m", conversation="c")


def test_an_undefined_conversation_is_named_with_the_fix() -> None:
    with pytest.raises(DurableRegistrationError, match=r"no conversation named 'unit\.missing'"):
        conversation_definition("unit.missing")


def test_turn_ids_follow_the_slug_rule() -> None:
    assert slugify_speaker("Dr. Ada Lovelace!") == "dr-ada-lovelace"
    assert slugify_speaker("***") == "speaker"
    assert turn_id("run-1/conversation-0", 3, "Dr. Ada") == "run-1/conversation-0.t3.dr-ada"


def test_the_driver_halts_on_credits_only_between_turns() -> None:
    conversation = define_conversation(
        "unit.budget", participants=[A, B], policy=ConversationPolicy(10, max_credits_cents=2)
    )
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
    driver.commit(_turn(0, "a", cost=0.015))  # 1.5 cents: under the cap
    assert driver.next_speaker() == B
    driver.commit(_turn(1, "b", cost=0.015))  # 3 cents: the turn completes, then the cap halts
    assert driver.next_speaker() is None
    assert driver.halted is not None
    assert (driver.halted.kind, driver.halted.spent_cents) == ("max_credits", pytest.approx(3.0))


def test_a_resumed_driver_continues_the_turn_order() -> None:
    conversation = define_conversation(
        "unit.trio", participants=[A, B, C], policy=ConversationPolicy(max_turns=5)
    )
    driver = ConversationDriver(
        conversation, run_id="r", seed="s", transcript=[_turn(0, "a"), _turn(1, "b")],
        started_at=NOW,
    )  # fmt: skip
    assert driver.next_speaker() == C


def test_a_turn_order_function_must_name_a_participant() -> None:
    conversation = define_conversation(
        "unit.wild", participants=[A, B], policy=ConversationPolicy(2, turn_order=lambda s: 7)
    )
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
    with pytest.raises(DurableRegistrationError, match="returned 7"):
        driver.next_speaker()


def test_the_breaker_caps_attempts_opens_and_closes_after_its_cooldown() -> None:
    policy = CallPolicy(max_retries=5, failures_to_open=3, cooldown=timedelta(seconds=30))
    breaker = Breaker(policy)
    assert breaker.attempts_allowed() == 3  # six allowed by retries, the circuit opens at three
    breaker.failed(2, NOW)
    assert breaker.open_until(NOW) is None
    assert breaker.attempts_allowed() == 1
    breaker.failed(1, NOW)
    assert breaker.open_until(NOW + timedelta(seconds=10)) == NOW + timedelta(seconds=30)
    assert breaker.open_until(NOW + timedelta(seconds=30)) is None  # cooled down: closed again
    assert breaker.attempts_allowed() == 3
