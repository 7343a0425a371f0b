"""A conversation run on the local substrate: the driver's loop, journaled turn by turn.

Each turn calls its participant under the participant's call policy (a
deadline per attempt, retries with backoff, the circuit breaker), then the
committed turn is appended to the store's journal before anything else
happens. A run that crashed resumes from its journal: committed turns are
never called again. Nested conversations run the same loop one level deeper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from durable import (
    DurableRegistrationError,
    LiveEvent,
    TokenDeltas,
    live_tokens,
    publish_token,
    registered_steps,
    retry_hints,
)
from durable.conversation import (
    DEFAULT_MAX_DEPTH,
    SPEAK_STEP,
    Conversation,
    ConversationDriver,
    ConversationEvent,
    ConversationResult,
    ConversationTurn,
    Participant,
    SpeakRequest,
    TurnUsage,
    conversation_definition,
    forward_headers,
    nested_text,
    turn_messages,
)

from ._journal import ConversationJournal
from ._store import utc_now

__all__ = ["run_local_conversation"]


class _Refused(Exception):
    retryable = False


async def run_local_conversation(
    conversation: Conversation,
    *,
    seed: str,
    run_id: str,
    journal: ConversationJournal,
    publish: Callable[[LiveEvent], None],
    step: int,
    depth: int = 1,
    parent_turn: str | None = None,
    aborted: Callable[[], Awaitable[bool]] | None = None,
    shown: Callable[[int], Awaitable[int]] | None = None,
) -> ConversationResult:
    """Run (or resume) conversation run ``run_id`` to its halt; return its result.

    ``aborted`` is asked before every turn; once it says so, the run halts with
    ``abort``. ``shown(turn)`` tells how much of a turn's text the live stream
    already has, so a turn cut off by a crash does not stream its text twice.
    """
    entry = await journal.load(run_id)
    if entry is not None and entry.halted is not None and entry.ended_at is not None:
        driver = ConversationDriver(
            conversation, run_id=run_id, seed=seed, transcript=entry.turns,
            started_at=entry.started_at,
        )  # fmt: skip
        driver.halted = entry.halted
        return driver.result(entry.ended_at)
    started = entry.started_at if entry is not None else utc_now()
    await journal.begin(run_id, started)
    driver = ConversationDriver(
        conversation, run_id=run_id, seed=seed,
        transcript=entry.turns if entry is not None else (), started_at=started,
    )  # fmt: skip
    names = [p.name for p in conversation.participants]

    def emit(kind: str, **fields: Any) -> None:
        event = ConversationEvent(type=kind, run_id=run_id, timestamp=utc_now(), **fields)  # type: ignore[arg-type]
        publish(
            LiveEvent(
                kind="conversation", step=step, turn=event.index,
                detail=event.model_dump(mode="json", exclude_none=True),
            )
        )  # fmt: skip

    if driver.transcript:
        emit("conversation_resumed", participants=names)
    else:
        emit("conversation_start", participants=names, seed=seed)
    while (speaker := driver.next_speaker()) is not None:
        if aborted is not None and await aborted():
            driver.abort()
            break
        already = 0
        if entry is not None and shown is not None:
            already = await shown(len(driver.transcript))
        turn = await _turn(
            driver, speaker, depth, parent_turn, journal, publish, step, emit, already
        )
        if turn is None:
            continue  # the turn failed and halted the conversation
        # Committed before anything else happens; the first turn recorded at an index wins.
        turn = await journal.append_turn(run_id, turn)
        driver.commit(turn)
        emit("turn_end", index=turn.index, speaker=turn.speaker, turn=turn)
    ended = utc_now()
    assert driver.halted is not None
    await journal.record_halt(run_id, driver.halted, ended)
    result = driver.result(ended)
    emit("conversation_end", reason=driver.halted.kind)
    return result


async def _turn(
    driver: ConversationDriver,
    speaker: Participant,
    depth: int,
    parent_turn: str | None,
    journal: ConversationJournal,
    publish: Callable[[LiveEvent], None],
    step: int,
    emit: Callable[..., None],
    already: int = 0,
) -> ConversationTurn | None:
    conversation = driver.conversation
    index = len(driver.transcript)
    tid = driver.turn_id(speaker)
    breaker = driver.breakers[speaker.name]
    if (until := breaker.open_until(utc_now())) is not None:
        driver.fail(speaker, f"the circuit of {speaker.name!r} is open until {until.isoformat()}")
        return None
    policy = conversation.call_policy(speaker)
    allowed = breaker.attempts_allowed()
    retry = policy.retry_policy(allowed)
    deltas = TokenDeltas(step, publish, turn=index, shown=already)
    started = utc_now()
    attempt = 0
    while True:
        attempt += 1
        emit("turn_start", index=index, speaker=speaker.name, turn_id=tid, attempt=attempt)
        deltas.new_attempt()
        try:
            with live_tokens(deltas):
                async with asyncio.timeout(policy.deadline.total_seconds()):
                    text, usage = await _call(
                        driver, speaker, tid, depth, parent_turn, journal, publish, step
                    )
            break
        except Exception as exc:
            retryable = isinstance(exc, TimeoutError) or retry_hints(exc)[0]
            message = (
                f"no answer within the deadline of {policy.deadline.total_seconds():g}s"
                if isinstance(exc, TimeoutError)
                else str(exc) or repr(exc)
            )
            if not retryable or attempt >= allowed:
                breaker.failed(attempt, utc_now())
                opened = " (its circuit is now open)" if breaker.opened_at is not None else ""
                driver.fail(speaker, f"{message}; after {attempt} attempt(s){opened}")
                return None
            emit("turn_retry", index=index, speaker=speaker.name, turn_id=tid,
                 attempt=attempt + 1, reason=message)  # fmt: skip
            await asyncio.sleep(retry.delay_before(attempt + 1).total_seconds())
    return ConversationTurn(
        index=index, speaker=speaker.name, turn_id=tid, text=text, usage=usage,
        attempts=attempt, started_at=started, ended_at=utc_now(),
    )  # fmt: skip


async def _call(
    driver: ConversationDriver,
    speaker: Participant,
    tid: str,
    depth: int,
    parent_turn: str | None,
    journal: ConversationJournal,
    publish: Callable[[LiveEvent], None],
    step: int,
) -> tuple[str, TurnUsage]:
    if speaker.conversation is not None:
        if depth + 1 > DEFAULT_MAX_DEPTH:
            raise _Refused(
                f"participant {speaker.name!r} is conversation {speaker.conversation!r} at "
                f"nesting depth {depth + 1}, beyond the maximum of {DEFAULT_MAX_DEPTH}; "
                "flatten the nesting"
            )
        inner = await run_local_conversation(
            conversation_definition(speaker.conversation),
            seed=_last_words(driver),
            run_id=tid,
            journal=journal,
            publish=_inner_events_stay_inside,
            step=step,
            depth=depth + 1,
            parent_turn=tid,
        )
        if inner.halted.kind == "participant_error":
            raise _Refused(f"conversation {speaker.conversation!r} failed: {inner.halted.message}")
        text = nested_text(inner)
        publish_token(text)  # the outer stream sees the inner conversation as one delta
        return text, inner.usage
    assert speaker.model is not None
    headers = forward_headers(
        depth=depth, run_id=driver.run_id, turn=tid, speaker=speaker.name, parent_turn=parent_turn
    )
    messages = turn_messages(driver.conversation, speaker, driver.seed, driver.transcript)
    speak = registered_steps().get(SPEAK_STEP)
    if speak is None:
        raise DurableRegistrationError(
            f"step {SPEAK_STEP!r} is not registered; import activities.conversation in the "
            "module that defines the conversation"
        )
    request = SpeakRequest(
        model=speaker.model, messages=messages, headers=headers, auth_source=speaker.auth_source
    )
    text, usage = await speak.fn(request)
    return text, usage


def _inner_events_stay_inside(_: LiveEvent) -> None:
    """A nested conversation's own events are not forwarded to the outer stream."""


def _last_words(driver: ConversationDriver) -> str:
    """What a nested conversation is asked: the outer conversation's latest word."""
    return driver.transcript[-1].text if driver.transcript else driver.seed
