"""The substrate-free rules of conversations: definitions, turn ids, the driver, the breaker,
call policies, headers, the typed stream, and the turn step's judgment of a failure."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from durable import (
    DurableRegistrationError,
    DurableStoreError,
    LiveEvent,
    TokenDeltas,
    live_tokens,
    retry_hints,
)
from durable.conversation import (
    FORWARD_HEADERS,
    REFERENCE_FORWARD_HEADERS,
    AuthMode,
    Breaker,
    BreakerState,
    CallPolicy,
    ConversationDriver,
    ConversationEvent,
    ConversationEvents,
    ConversationPolicy,
    ConversationTurn,
    DriveState,
    ForwardHeaderNames,
    HaltContext,
    HaltReason,
    HaltSignal,
    Participant,
    TurnUsage,
    conversation_definition,
    conversation_run,
    define_conversation,
    forward_headers,
    network_errors,
    read_depth,
    slugify_speaker,
    transient_errors,
    turn_id,
)
from durable_agents.activities.conversation import TurnRequest, _judge
from durable_agents.adapters.llm import ModelRequestError, ModelUnavailableError

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


async def test_the_driver_halts_on_credits_only_between_turns() -> None:
    conversation = define_conversation(
        "unit.budget", participants=[A, B], policy=ConversationPolicy(10, max_credits_cents=2)
    )
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
    await driver.commit(_turn(0, "a", cost=0.015))  # 1.5 cents: under the cap
    assert driver.next_speaker() == B
    await driver.commit(
        _turn(1, "b", cost=0.015)
    )  # 3 cents: the turn completes, then the cap halts
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


# Parity with the reference conversation API: call policies, headers, halts, auth, events.


def test_a_fixed_backoff_grows_by_its_coefficient_and_jitter_only_shortens_it() -> None:
    policy = CallPolicy(backoff=timedelta(seconds=1), backoff_coefficient=2.0, jitter=0.0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.delay_after(20) == 100.0  # capped at a hundred times the first delay
    jittered = CallPolicy(backoff=timedelta(seconds=1), backoff_coefficient=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = {jittered.delay_after(1, rng=rng) for _ in range(50)}
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(delays) > 40  # spread out, not one value


def test_a_backoff_function_gets_the_failed_attempt() -> None:
    seconds = CallPolicy(backoff=lambda attempt: 0.1 * attempt, jitter=0.0)
    assert seconds.delay_after(3) == pytest.approx(0.3)
    spans = CallPolicy(backoff=lambda attempt: timedelta(seconds=attempt), jitter=0.0)
    assert spans.delay_after(2) == 2.0
    negative = CallPolicy(backoff=lambda attempt: -1, jitter=0.0)
    with pytest.raises(ValueError, match="returned -1 for attempt 1"):
        negative.delay_after(1)


def test_a_call_policy_refuses_a_deadline_or_backoff_that_is_not_positive() -> None:
    with pytest.raises(ValidationError, match="deadline must be positive"):
        CallPolicy(deadline=timedelta(0))
    with pytest.raises(ValidationError, match="backoff must be positive"):
        CallPolicy(backoff=timedelta(0))


@pytest.mark.parametrize(
    ("error", "network", "transient"),
    [
        (TimeoutError(), True, True),
        (ConnectionError("refused"), True, True),
        (ModelUnavailableError("could not reach the model"), True, True),
        (ModelUnavailableError("answered 500", status=500), False, True),
        (ModelUnavailableError("answered 429", status=429, retry_after=2), False, True),
        (ModelRequestError("answered 400", status=400), False, False),
        (ValueError("a bug"), False, True),
    ],
)
def test_the_reference_default_retries_only_what_got_no_answer(
    error: Exception, network: bool, transient: bool
) -> None:
    assert (network_errors(error), transient_errors(error)) == (network, transient)
    assert CallPolicy().is_retryable is network_errors


def test_the_reference_header_names_are_a_preset_and_names_are_checked() -> None:
    headers = forward_headers(
        REFERENCE_FORWARD_HEADERS, depth=2, run_id="r", turn="r.t0.a", speaker="a",
        parent_turn="p.t1.b",
    )  # fmt: skip
    assert headers == {
        "x-tangle-forwarded-depth": "2",
        "x-tangle-runid": "r",
        "x-tangle-turnid": "r.t0.a",
        "x-tangle-speaker": "a",
        "x-tangle-parent-turnid": "p.t1.b",
    }
    assert REFERENCE_FORWARD_HEADERS.authorization == "x-tangle-forwarded-authorization"
    assert "x-durable-run-id" in forward_headers(FORWARD_HEADERS, depth=1, run_id="r", turn="t",
                                                 speaker="a")  # fmt: skip
    with pytest.raises(ValidationError, match="lower-case"):
        ForwardHeaderNames(depth="X-Depth")
    with pytest.raises(ValidationError, match="must differ"):
        ForwardHeaderNames(depth="x-same", speaker="x-same")


def test_an_inbound_depth_is_read_and_a_bad_one_refused() -> None:
    assert read_depth({}) == 0
    assert read_depth({"X-Durable-Forwarded-Depth": "3"}) == 3
    for bad in ("-1", "two", ""):
        with pytest.raises(ValueError, match="must be a non-negative integer"):
            read_depth({"x-durable-forwarded-depth": bad})


def test_a_run_keeps_only_the_headers_its_policy_propagates() -> None:
    conversation = define_conversation(
        "unit.gateway",
        participants=[A, B],
        policy=ConversationPolicy(
            2, forward_headers=REFERENCE_FORWARD_HEADERS, propagated_headers=("TraceParent",)
        ),
    )
    run = conversation_run(
        conversation,
        "hello",
        headers={
            "traceparent": "00-1-2-01",
            "x-secret-ish": "not chosen",
            "X-Tangle-Forwarded-Depth": "2",
            "x-tangle-turnid": "up.t4.caller",
        },
    )
    assert run.headers == {"traceparent": "00-1-2-01"}
    assert (run.depth, run.parent_turn) == (3, "up.t4.caller")
    with pytest.raises(ValueError, match="beyond depth 4 are refused"):
        conversation_run(conversation, "hello", headers={"x-tangle-forwarded-depth": "4"})


@pytest.mark.parametrize(
    ("propagated", "message"),
    [
        (("Authorization",), "a credential"),
        (("cookie",), "a credential"),
        (("x-durable-forwarded-authorization",), "a credential"),
        (("X-Api-Key",), "a credential"),
        (("x-session-token",), "a credential"),
        (("x-client-secret",), "a credential"),
        (("x-durable-run-id",), "already carries"),
        ("traceparent", "pass a sequence of header names"),
    ],
)
def test_a_secret_or_stamped_header_is_refused_as_propagated(
    propagated: tuple[str, ...], message: str
) -> None:
    policy = ConversationPolicy(2, propagated_headers=propagated)
    with pytest.raises(DurableRegistrationError, match=message):
        define_conversation("unit.leaky", participants=[A, B], policy=policy)


async def test_halt_on_sees_the_last_turn_may_be_async_and_gives_a_reason() -> None:
    seen: list[HaltContext] = []

    async def judge(context: HaltContext) -> HaltSignal | bool:
        seen.append(context)
        return HaltSignal(reason="b agreed") if context.last_turn.speaker == "b" else False

    conversation = define_conversation(
        "unit.signal", participants=[A, B], policy=ConversationPolicy(5, halt_on=judge)
    )
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
    await driver.commit(_turn(0, "a"))
    assert driver.halted is None
    await driver.commit(_turn(1, "b"))
    assert driver.halted == HaltReason(kind="predicate", reason="b agreed")
    assert [(c.turn_index, c.last_turn.index) for c in seen] == [(1, 0), (2, 1)]


async def test_a_plain_halt_predicate_may_answer_true_or_a_reason() -> None:
    for verdict, reason in ((True, "halt_on returned true"), ("enough", "enough")):
        conversation = define_conversation(
            f"unit.plain.{reason[:6]}", participants=[A, B],
            policy=ConversationPolicy(5, halt_on=lambda _, v=verdict: v),  # type: ignore[misc]
        )  # fmt: skip
        driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
        await driver.commit(_turn(0, "a"))
        assert driver.halted == HaltReason(kind="predicate", reason=reason)


def test_auth_source_is_a_mode_or_a_function_of_the_state() -> None:
    def by_turn(state: DriveState) -> AuthMode:
        return "agent-owned" if state.turn_index else "forward-user"

    owned = Participant(name="o", model="m", auth_source="agent-owned")
    decided = Participant(name="d", model="m", auth_source=by_turn)
    wild = Participant(name="w", model="m", auth_source=lambda state: "someone-else")  # type: ignore[arg-type,return-value]
    conversation = define_conversation(
        "unit.auth", participants=[A, owned, decided, wild], policy=ConversationPolicy(5)
    )
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW)
    assert [driver.forwards_user(p) for p in (A, owned, decided)] == [True, False, True]
    driver.transcript.append(_turn(0, "a"))
    assert driver.forwards_user(decided) is False
    with pytest.raises(DurableRegistrationError, match="returned 'someone-else'"):
        driver.forwards_user(wild)
    with pytest.raises(ValidationError):
        Participant(name="x", model="m", auth_source="pay-twice")  # type: ignore[arg-type]


def test_a_driver_restores_its_breakers_when_it_continues_as_new() -> None:
    policy = CallPolicy(failures_to_open=2)
    conversation = define_conversation(
        "unit.carried", participants=[Participant(name="a", model="m", call_policy=policy), B],
        policy=ConversationPolicy(4),
    )  # fmt: skip
    saved = {"a": BreakerState(failures=2, opened_at=NOW), "gone": BreakerState(failures=9)}
    driver = ConversationDriver(conversation, run_id="r", seed="s", started_at=NOW, breakers=saved)
    assert driver.breakers["a"].state == saved["a"]
    assert not driver.may_call(conversation.participant("a"), NOW + timedelta(seconds=1))
    assert driver.halted is not None
    assert "is open until" in (driver.halted.message or "")


def test_a_conversations_stream_reads_back_as_typed_events() -> None:
    start = ConversationEvent(type="turn_start", run_id="c", index=0, speaker="a",
                              turn_id="c.t0.a", attempt=1)  # fmt: skip
    entries = [
        LiveEvent(kind="step_started", step=1, intent="turn 0: a", at=NOW),
        start.entry().model_copy(update={"at": NOW}),
        LiveEvent(kind="token", step=1, turn=0, offset=0, text="Hel", at=NOW),
        LiveEvent(kind="token", step=1, turn=0, offset=3, text="lo", at=NOW),
    ]
    reader = ConversationEvents("c")
    events = [e for entry in entries if (e := reader.read(entry)) is not None]
    assert [e.type for e in events] == ["turn_start", "turn_text_delta", "turn_text_delta"]
    assert events[0] == start.model_copy(update={"timestamp": NOW})
    assert {(e.speaker, e.turn_id, e.timestamp) for e in events[1:]} == {("a", "c.t0.a", NOW)}
    assert "".join(e.text or "" for e in events[1:]) == "Hello"


# The turn step's judgment of a failed attempt: what the substrate retries, and when.


def _request(attempts: int = 3) -> TurnRequest:
    return TurnRequest(
        conversation="unit.any", run_id="c", speaker="a", index=2, turn_id="c.t2.a", seed="s",
        transcript_ref=None, depth=1, forward_user=False, attempts=attempts,
    )  # fmt: skip


def _judged(
    error: Exception, policy: CallPolicy, *, attempt: int = 1, attempts: int = 3
) -> list[LiveEvent]:
    entries: list[LiveEvent] = []
    with live_tokens(TokenDeltas(5, entries.append, turn=2)):
        _judge(error, policy, _request(attempts), attempt)
    return entries


def test_a_retried_turn_waits_its_backoff_and_says_why() -> None:
    policy = CallPolicy(backoff=lambda attempt: 0.5 * attempt, jitter=0.0)
    error = ConnectionError("connection reset")

    (entry,) = _judged(error, policy, attempt=2)

    assert retry_hints(error) == (True, 1.0)
    assert (entry.kind, entry.step, entry.turn, entry.attempt) == ("conversation", 5, 2, 3)
    assert (entry.error_type, entry.error, entry.delay) == (
        "ConnectionError",
        "connection reset",
        1.0,
    )
    assert entry.detail == {
        "type": "turn_retry", "run_id": "c", "index": 2, "speaker": "a", "turn_id": "c.t2.a",
        "attempt": 3, "reason": "connection reset",
    }  # fmt: skip


def test_a_retry_after_the_server_asked_for_wins_over_the_backoff() -> None:
    error = ModelUnavailableError("answered 429", status=429, retry_after=7.0)
    (entry,) = _judged(error, CallPolicy(is_retryable=transient_errors))
    assert retry_hints(error) == (True, 7.0)
    assert entry.delay == 7.0


def test_the_policy_not_the_error_class_decides_a_retry() -> None:
    refused = ModelRequestError("answered 400", status=400)  # not retryable by its class
    assert _judged(refused, CallPolicy(is_retryable=lambda error: True))
    assert retry_hints(refused)[0] is True
    answered = ModelUnavailableError("answered 503", status=503)  # retryable by its class
    assert _judged(answered, CallPolicy()) == []
    assert retry_hints(answered)[0] is False


def test_a_durable_error_in_a_turn_is_final() -> None:
    error = DurableStoreError("blob 00 is not in the blob store")
    assert _judged(error, CallPolicy(is_retryable=lambda error: True)) == []
    assert retry_hints(error)[0] is False


def test_the_last_attempt_announces_no_retry() -> None:
    error = ConnectionError("refused")
    assert _judged(error, CallPolicy(), attempt=3, attempts=3) == []
    assert retry_hints(error)[0] is True  # the substrate's own policy stops there
