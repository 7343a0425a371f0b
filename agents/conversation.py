"""The conversation agent: one conversation run, written once as ordinary durable code.

A conversation is a child run of the agent ``CONVERSATION_AGENT``: a child
workflow on Temporal, a run in the same store locally. ``ConversationDriver``
decides who speaks and when to halt; this loop runs each model turn as the
``conversation.turn`` step (kind ``llm``), under the participant's call policy:
its deadline is the step's timeout, its retries the step's retry policy, cut
short where the participant's circuit would open. The transcript travels to
each turn by blob reference, so history grows by one turn per turn. A
participant that is itself a conversation runs as a child run of this one.

``run_conversation`` runs a conversation for a caller outside any agent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from durable import (
    UNRECORDABLE_ERRORS,
    DurableChildRunFailedError,
    DurableContext,
    DurableError,
    DurableStepError,
    DurableStepFailedError,
    ErrorCode,
    LiveEvent,
    agent,
    child_conversation,
)
from durable.conversation import (
    ABORT_EVENT,
    CONVERSATION_AGENT,
    Conversation,
    ConversationDriver,
    ConversationEvent,
    ConversationEvents,
    ConversationResult,
    ConversationRun,
    ConversationState,
    ConversationTurn,
    Participant,
    conversation_definition,
    conversation_run,
    nested_failure,
    nested_text,
)
from durable_agents.activities.conversation import TurnRequest, conversation_turn
from durable_agents.adapters.telemetry import names as span_names
from durable_agents.adapters.telemetry import spans, turn_attributes

if TYPE_CHECKING:
    from durable_agents.adapters.local import DurableRunStore
    from durable_agents.adapters.temporal import AgentClient

__all__ = ["OnEvent", "conversation", "run_conversation"]

OnEvent = Callable[[ConversationEvent], Awaitable[None] | None]

_TURN_FAILURES: tuple[type[DurableError], ...] = (DurableStepError, *UNRECORDABLE_ERRORS)
"""How a turn step fails: for good after its attempts, or with a result no record can hold."""
_PARTICIPANT_FAULTS = (None, ErrorCode.STEP_TIMEOUT.value)
"""Error codes of turn failures that count against the participant's circuit: its own
errors (no code) and its deadline. Any other code is this library's (a blob store that
cannot be read, a definition that differs between workers): it halts the conversation
without blaming the participant."""


@agent(name=CONVERSATION_AGENT, description="participants taking turns under a policy")
async def conversation(ctx: DurableContext, run: ConversationRun) -> ConversationResult:
    definition = conversation_definition(run.conversation)
    state = run.state
    driver = ConversationDriver(
        definition,
        run_id=ctx.run_id,
        seed=run.seed,
        transcript=state.transcript if state else (),
        started_at=state.started_at if state else await ctx.now(),
        breakers=state.breakers if state else None,
    )
    talk = _Talk(ctx, driver, run)
    names = [p.name for p in definition.participants]
    if state is None:
        talk.emit("conversation_start", participants=names, seed=run.seed)
    else:
        talk.emit("conversation_resumed", participants=names, transcript=driver.transcript)
    aborted = run.aborted
    while (speaker := driver.next_speaker()) is not None:
        aborted = aborted or await ctx.has_event(ABORT_EVENT)
        if aborted:
            driver.abort()
            break
        turn = await talk.turn(speaker)
        if turn is None:
            continue  # the turn failed and halted the conversation
        await driver.commit(turn)
        talk.emit("turn_end", index=turn.index, speaker=turn.speaker, turn_id=turn.turn_id,
                  turn=turn)  # fmt: skip
        if driver.halted is None and ctx.continue_as_new_suggested():
            carried = {"state": talk.carried(), "aborted": aborted}
            await ctx.continue_as_new(run.model_copy(update=carried))
    assert driver.halted is not None
    result = driver.result(await ctx.now())
    talk.emit("conversation_end", reason=driver.halted.kind, result=result)
    return result


class _Talk:
    """One execution of a conversation run: its turns, and where its transcript is stored."""

    def __init__(self, ctx: DurableContext, driver: ConversationDriver, run: ConversationRun):
        self.ctx = ctx
        self.driver = driver
        self.run = run
        self.transcript_ref = run.state.transcript_ref if run.state else None
        self.pending: list[ConversationTurn] = list(run.state.pending) if run.state else []
        """Committed turns not in the stored transcript yet (nested conversations' turns)."""
        self._replayed = False
        self._announced = False

    def emit(self, kind: str, **fields: object) -> bool:
        """Publish a conversation event; a local resume announces itself before its first.

        Returns whether it went out: not while a local resume replays recorded turns."""
        if self._replayed and not self._announced:
            # Refused while still replaying; the first time it goes out, it leads.
            resumed = self._event(
                "conversation_resumed",
                participants=[p.name for p in self.driver.conversation.participants],
                transcript=self.driver.transcript,
            )
            self._announced = self.ctx.publish(resumed.entry())
        if not self.ctx.publish(self._event(kind, **fields).entry()):
            self._replayed = True
            return False
        return True

    def _event(self, kind: str, **fields: object) -> ConversationEvent:
        return ConversationEvent(type=kind, run_id=self.ctx.run_id, **fields)  # type: ignore[arg-type]

    def carried(self) -> ConversationState:
        return ConversationState(
            transcript=self.driver.transcript,
            started_at=self.driver.started_at,
            transcript_ref=self.transcript_ref,
            pending=self.pending,
            breakers={name: b.state for name, b in self.driver.breakers.items()},
        )

    async def turn(self, speaker: Participant) -> ConversationTurn | None:
        """Run ``speaker``'s turn; ``None`` if it failed (the conversation halted)."""
        driver = self.driver
        if driver.breakers[speaker.name].opened_at is not None and not driver.may_call(
            speaker, await self.ctx.now()
        ):
            return None
        index = len(driver.transcript)
        tid = driver.turn_id(speaker)
        if not self.emit("turn_start", index=index, speaker=speaker.name, turn_id=tid, attempt=1):
            return await self._speak(speaker, index, tid)  # recorded: replayed, not traced
        attributes = turn_attributes(self.ctx.run_id, index, speaker.name, tid)
        with spans.span(span_names.TURN, attributes) as span:
            turn = await self._speak(speaker, index, tid)
            span.set_attribute(span_names.TURN_OUTCOME, "failed" if turn is None else "committed")
        return turn

    async def _speak(self, speaker: Participant, index: int, tid: str) -> ConversationTurn | None:
        if speaker.conversation is not None:
            return await self._nested(speaker, index, tid)
        return await self._model(speaker, index, tid)

    async def _model(self, speaker: Participant, index: int, tid: str) -> ConversationTurn | None:
        driver, run = self.driver, self.run
        policy = driver.conversation.call_policy(speaker)
        allowed = driver.breakers[speaker.name].attempts_allowed()
        request = TurnRequest(
            conversation=run.conversation, run_id=self.ctx.run_id, speaker=speaker.name,
            index=index, turn_id=tid, seed=run.seed, transcript_ref=self.transcript_ref,
            pending=self.pending, depth=run.depth, parent_turn=run.parent_turn,
            root_run_id=run.root_run_id,
            forward_user=driver.forwards_user(speaker), headers=run.headers, attempts=allowed,
        )  # fmt: skip
        try:
            outcome = await self.ctx.step(
                f"turn {index}: {speaker.shown_as}",
                conversation_turn,
                request,
                kind="llm",
                timeout=policy.deadline,
                retry=policy.retry_policy(allowed),
            )
        except _TURN_FAILURES as failure:
            attempts = failure.attempts if isinstance(failure, DurableStepFailedError) else allowed
            code = failure.error_code if isinstance(failure, DurableStepFailedError) else None
            if code in _PARTICIPANT_FAULTS:
                driver.turn_failed(speaker, attempts, failure.message, await self.ctx.now())
            else:
                driver.fail(speaker, f"{failure.message}; after {attempts} attempt(s)")
            return None
        self.transcript_ref, self.pending = outcome.transcript_ref, []
        return outcome.turn(request)

    async def _nested(self, speaker: Participant, index: int, tid: str) -> ConversationTurn | None:
        assert speaker.conversation is not None
        driver, run = self.driver, self.run
        depth = run.depth + 1
        refused = driver.nesting_refused(speaker, depth)
        if refused is not None:
            driver.fail(speaker, refused)
            return None
        inner = conversation_definition(speaker.conversation)
        propagated = {h.lower() for h in inner.policy.propagated_headers}
        nested = ConversationRun(
            conversation=inner.name,
            seed=driver.nested_seed(),
            depth=depth,
            parent_turn=tid,
            root_run_id=run.root_run_id or self.ctx.run_id,
            headers={k: v for k, v in run.headers.items() if k in propagated},
        )
        try:
            result = await child_conversation(self.ctx, nested)
        except DurableChildRunFailedError as failure:
            driver.fail(speaker, failure.message)
            return None
        failed = nested_failure(speaker, result)
        if failed is not None:
            driver.fail(speaker, failed)
            return None
        text = nested_text(result)
        # The outer stream sees the inner conversation as one delta; its own run has the rest.
        self.ctx.publish(LiveEvent(kind="token", turn=index, offset=0, text=text))
        turn = ConversationTurn(
            index=index, speaker=speaker.name, turn_id=tid, text=text, usage=result.usage,
            attempts=1, started_at=result.started_at, ended_at=result.ended_at,
        )  # fmt: skip
        self.pending.append(turn)
        return turn


async def run_conversation(
    definition: Conversation,
    seed: str,
    *,
    run_id: str,
    store: DurableRunStore | None = None,
    client: AgentClient | None = None,
    headers: Mapping[str, str] | None = None,
    on_event: OnEvent | None = None,
) -> ConversationResult:
    """Run ``definition`` on ``seed`` as run ``run_id``, outside any agent, and return its result.

    Give a local ``store`` (the run executes in this process) or a Temporal
    ``client`` (a worker executes it). Reusing a ``run_id`` resumes that run
    where it stopped. ``headers`` are the caller's inbound headers: the
    forwarding headers place the run (its hop depth and parent turn), and those
    the policy propagates are passed on to every participant; they are recorded
    with the run, so never put a secret there. ``on_event`` receives the run's
    live stream as typed ``ConversationEvent``s, text deltas included.
    """
    if (store is None) == (client is None):
        raise ValueError(
            "run_conversation needs exactly one of store= (local) or client= (Temporal)"
        )
    run = conversation_run(definition, seed, headers=headers)
    if client is not None:
        await client.start(conversation, run, run_id=run_id)
        if on_event is not None:
            await _deliver(client.watch(run_id), run_id, on_event)
        result: ConversationResult = await client.result(run_id)
        return result
    assert store is not None
    from durable_agents.adapters.local import run_durable, watch_run

    task = asyncio.create_task(run_durable(conversation, run, store=store, run_id=run_id))
    try:
        if on_event is not None and await _begun(store, run_id, task):
            await _deliver(watch_run(store, run_id, poll_interval=0.05), run_id, on_event)
        return (await task).result
    finally:
        task.cancel()  # only a watcher's failure leaves it running: the run resumes later


async def _begun(store: DurableRunStore, run_id: str, task: asyncio.Future[Any]) -> bool:
    """Whether run ``run_id`` exists (and can be watched), waiting while ``task`` may make it."""
    while True:
        if await store.load_run(run_id) is not None:
            return True
        if task.done():
            return False
        await asyncio.sleep(0.01)


async def _deliver(entries: AsyncIterator[LiveEvent], run_id: str, on_event: OnEvent) -> None:
    reader = ConversationEvents(run_id)
    async for entry in entries:
        event = reader.read(entry)
        if event is not None:
            delivered = on_event(event)
            if inspect.isawaitable(delivered):
                await delivered
