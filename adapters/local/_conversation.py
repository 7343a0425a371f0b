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
from dataclasses import dataclass
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
from durable._live import retry_entry
from durable.conversation import (
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
    nested_failure,
    nested_text,
    turn_messages,
)

from ._journal import ConversationJournal
from ._store import utc_now

__all__ = ["run_local_conversation"]

Publish = Callable[[LiveEvent], None]


class _Refused(Exception):
    retryable = False


async def run_local_conversation(
    conversation: Conversation,
    *,
    seed: str,
    run_id: str,
    journal: ConversationJournal,
    publish: Publish,
    step: int,
    depth: int = 1,
    parent_turn: str | None = None,
    aborted: Callable[[], Awaitable[bool]] | None = None,
    shown: Callable[[int], Awaitable[int]] | None = None,
) -> ConversationResult:
    """Run (or resume) conversation run ``run_id`` to its halt; return its result.

    Its events and token deltas go to ``publish`` as entries of position
    ``step``. ``aborted`` is asked before every turn; once it says so, the run
    halts with ``abort``. ``shown(turn)`` tells how much of a turn's text the
    live stream already has, so a turn cut off by a crash is not streamed twice.
    """
    entry = await journal.load(run_id)
    turns = entry.turns if entry is not None else []
    started = entry.started_at if entry is not None else utc_now()
    driver = ConversationDriver(
        conversation, run_id=run_id, seed=seed, transcript=turns, started_at=started
    )
    if entry is not None and entry.halted is not None and entry.ended_at is not None:
        driver.halted = entry.halted
        return driver.result(entry.ended_at)
    await journal.begin(run_id, started)
    run = _LocalConversation(driver, journal, publish, step, depth, parent_turn)
    names = [p.name for p in conversation.participants]
    if driver.transcript:
        run.emit("conversation_resumed", participants=names)
    else:
        run.emit("conversation_start", participants=names, seed=seed)
    # Only the turn under way at a crash can have streamed text already.
    already = await shown(len(turns)) if entry is not None and shown is not None else 0
    while (speaker := driver.next_speaker()) is not None:
        if aborted is not None and await aborted():
            driver.abort()
            break
        turn = await run.turn(speaker, already)
        already = 0
        if turn is None:
            continue  # the turn failed and halted the conversation
        # Committed before anything else happens; the first turn recorded at an index wins.
        turn = await journal.append_turn(run_id, turn)
        driver.commit(turn)
        run.emit("turn_end", index=turn.index, speaker=turn.speaker, turn=turn)
    ended = utc_now()
    assert driver.halted is not None
    await journal.record_halt(run_id, driver.halted, ended)
    run.emit("conversation_end", reason=driver.halted.kind)
    return driver.result(ended)


@dataclass
class _LocalConversation:
    driver: ConversationDriver
    journal: ConversationJournal
    publish: Publish
    step: int
    depth: int
    parent_turn: str | None

    def emit(self, kind: str, **fields: Any) -> None:
        detail = self._detail(kind, **fields)
        self.publish(
            LiveEvent(kind="conversation", step=self.step, turn=fields.get("index"), detail=detail)
        )

    def _detail(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = ConversationEvent(
            type=kind,  # type: ignore[arg-type]
            run_id=self.driver.run_id,
            timestamp=utc_now(),
            **fields,
        )
        return event.model_dump(mode="json", exclude_none=True)

    async def turn(self, speaker: Participant, already: int) -> ConversationTurn | None:
        """Run one turn under the speaker's call policy; ``None`` if it failed (the run halted)."""
        driver = self.driver
        if not driver.may_call(speaker, utc_now()):
            return None
        index = len(driver.transcript)
        tid = driver.turn_id(speaker)
        policy = driver.conversation.call_policy(speaker)
        allowed = driver.breakers[speaker.name].attempts_allowed()
        retry = policy.retry_policy(allowed)
        deltas = TokenDeltas(self.step, self.publish, turn=index, shown=already)
        started = utc_now()
        attempt = 0
        while True:
            attempt += 1
            self.emit("turn_start", index=index, speaker=speaker.name, turn_id=tid, attempt=attempt)
            deltas.new_attempt()
            try:
                with live_tokens(deltas):
                    async with asyncio.timeout(policy.deadline.total_seconds()):
                        text, usage = await self._call(speaker, tid)
                break
            except Exception as exc:
                timed_out = isinstance(exc, TimeoutError)
                message = (
                    f"no answer within the deadline of {policy.deadline.total_seconds():g}s"
                    if timed_out
                    else str(exc) or repr(exc)
                )
                if not (timed_out or retry_hints(exc)[0]) or attempt >= allowed:
                    driver.turn_failed(speaker, attempt, message, utc_now())
                    return None
                delay = retry.delay_before(attempt + 1).total_seconds()
                detail = self._detail("turn_retry", index=index, speaker=speaker.name,
                                      turn_id=tid, attempt=attempt + 1)  # fmt: skip
                self.publish(
                    retry_entry(
                        self.step, attempt + 1, turn=index, detail=detail, delay=delay,
                        error_type=type(exc).__name__, message=message,
                    )
                )  # fmt: skip
                await asyncio.sleep(delay)
        return ConversationTurn(
            index=index, speaker=speaker.name, turn_id=tid, text=text, usage=usage,
            attempts=attempt, started_at=started, ended_at=utc_now(),
        )  # fmt: skip

    async def _call(self, speaker: Participant, tid: str) -> tuple[str, TurnUsage]:
        driver = self.driver
        if speaker.conversation is not None:
            refused = driver.nesting_refused(speaker, self.depth + 1)
            if refused is not None:
                raise _Refused(refused)
            inner = await run_local_conversation(
                conversation_definition(speaker.conversation),
                seed=driver.nested_seed(),
                run_id=tid,
                journal=self.journal,
                publish=_inner_events_stay_inside,
                step=self.step,
                depth=self.depth + 1,
                parent_turn=tid,
            )
            failed = nested_failure(speaker, inner)
            if failed is not None:
                raise _Refused(failed)
            text = nested_text(inner)
            publish_token(text)  # the outer stream sees the inner conversation as one delta
            return text, inner.usage
        assert speaker.model is not None
        speak = registered_steps().get(SPEAK_STEP)
        if speak is None:
            raise DurableRegistrationError(
                f"step {SPEAK_STEP!r} is not registered; import activities.conversation in "
                "the module that defines the conversation"
            )
        headers = forward_headers(
            depth=self.depth, run_id=driver.run_id, turn=tid, speaker=speaker.name,
            parent_turn=self.parent_turn,
        )  # fmt: skip
        messages = turn_messages(driver.conversation, speaker, driver.seed, driver.transcript)
        request = SpeakRequest(
            model=speaker.model, messages=messages, headers=headers, auth_source=speaker.auth_source
        )
        text, usage = await speak.fn(request)
        return text, usage


def _inner_events_stay_inside(_: LiveEvent) -> None:
    """A nested conversation's own events are not forwarded to the outer stream."""
