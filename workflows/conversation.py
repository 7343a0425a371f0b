"""The conversation workflow: one conversation run, a child of the agent run that started it.

Each turn is the ``conversation.turn`` activity. Its deadline and retries are
the activity's timeout and retry policy; the participant's circuit breaker
lives here, in workflow state, and caps a turn's attempts where the circuit
would open. The transcript travels to activities by blob reference, so history
grows by one turn per turn. When Temporal suggests it, the run continues as
new carrying the transcript, the breakers and the counters. A participant that
is itself a conversation runs as a child of this workflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.conversation import TurnOutcome, TurnRequest
    from adapters.temporal import (
        ABORT_SIGNAL,
        CONVERSATION_WORKFLOW,
        LIVE_TOPIC,
        BreakerState,
        ConversationInput,
        ConversationState,
        temporal_retry_policy,
    )
    from durable import LiveEvent
    from durable.conversation import (
        TURN_ACTIVITY,
        ConversationDriver,
        ConversationEvent,
        ConversationResult,
        ConversationTurn,
        Participant,
        conversation_definition,
        nested_failure,
        nested_text,
    )

__all__ = ["ConversationWorkflow"]


@workflow.defn(name=CONVERSATION_WORKFLOW)
class ConversationWorkflow:
    def __init__(self) -> None:
        self._aborted = False
        self._stream = WorkflowStream()
        self._live = self._stream.topic(LIVE_TOPIC, type=LiveEvent)

    def _emit(self, kind: str, **fields: object) -> None:
        event = ConversationEvent(
            type=kind,  # type: ignore[arg-type]
            run_id=workflow.info().workflow_id,
            timestamp=workflow.now(),
            **fields,  # type: ignore[arg-type]
        )
        self._live.publish(
            LiveEvent(
                kind="conversation",
                turn=event.index,
                detail=event.model_dump(mode="json", exclude_none=True),
                at=workflow.now(),
            )
        )

    @workflow.signal(name=ABORT_SIGNAL)
    def abort(self) -> None:
        """Halt before the next turn."""
        self._aborted = True

    @workflow.run
    async def run(self, request: ConversationInput) -> ConversationResult:
        info = workflow.info()
        conversation = conversation_definition(request.conversation)
        state = request.state
        driver = ConversationDriver(
            conversation,
            run_id=info.workflow_id,
            seed=request.seed,
            transcript=state.transcript if state else (),
            started_at=state.started_at if state else workflow.now(),
        )
        transcript_ref = state.transcript_ref if state else None
        # Committed turns not yet in the stored transcript (nested conversations' turns).
        pending: list[ConversationTurn] = list(state.pending) if state else []
        if state is not None:
            for name, saved in state.breakers.items():
                driver.breakers[name].failures = saved.failures
                driver.breakers[name].opened_at = saved.opened_at
        names = [p.name for p in conversation.participants]
        if driver.transcript:
            self._emit("conversation_resumed", participants=names)
        else:
            self._emit("conversation_start", participants=names, seed=request.seed)
        self._aborted = self._aborted or request.aborted
        while (speaker := driver.next_speaker()) is not None:
            if self._aborted:
                driver.abort()
                break
            outcome = await self._turn(driver, speaker, request, transcript_ref, pending)
            if outcome is None:
                continue
            turn, stored = outcome
            if stored is None:
                pending.append(turn)
            else:
                transcript_ref, pending = stored, []
            driver.commit(turn)
            self._emit("turn_end", index=turn.index, speaker=turn.speaker, turn=turn)
            if driver.halted is None and info.is_continue_as_new_suggested():
                self._stream.detach_pollers()
                await workflow.wait_condition(workflow.all_handlers_finished)
                carried = ConversationState(
                    transcript=driver.transcript,
                    started_at=driver.started_at,
                    transcript_ref=transcript_ref,
                    pending=pending,
                    breakers={
                        name: BreakerState(failures=b.failures, opened_at=b.opened_at)
                        for name, b in driver.breakers.items()
                    },
                )
                carry = {"state": carried, "aborted": self._aborted}
                workflow.continue_as_new(request.model_copy(update=carry))
        assert driver.halted is not None
        result = driver.result(workflow.now())
        self._emit("conversation_end", reason=driver.halted.kind)
        self._stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _turn(
        self,
        driver: ConversationDriver,
        speaker: Participant,
        request: ConversationInput,
        transcript_ref: str | None,
        pending: list[ConversationTurn],
    ) -> tuple[ConversationTurn, str | None] | None:
        """The committed turn and the stored transcript's new reference (``None``: not stored)."""
        conversation = driver.conversation
        if not driver.may_call(speaker, workflow.now()):
            return None
        index = len(driver.transcript)
        tid = driver.turn_id(speaker)
        policy = conversation.call_policy(speaker)
        allowed = driver.breakers[speaker.name].attempts_allowed()
        self._emit("turn_start", index=index, speaker=speaker.name, turn_id=tid, attempt=1)
        started = workflow.now()
        if speaker.conversation is not None:
            return await self._nested(driver, speaker, request, tid, started)
        try:
            outcome: TurnOutcome = await workflow.execute_activity(
                TURN_ACTIVITY,
                TurnRequest(
                    conversation=conversation.name,
                    run_id=driver.run_id,
                    speaker=speaker.name,
                    turn_id=tid,
                    seed=request.seed,
                    transcript_ref=transcript_ref,
                    pending=pending,
                    depth=request.depth,
                    parent_turn=request.parent_turn,
                ),
                activity_id=f"{index}:turn {speaker.name}",
                start_to_close_timeout=policy.deadline,
                retry_policy=temporal_retry_policy(policy.retry_policy(allowed)),
                summary=f"turn {index}: {speaker.shown_as}",
                result_type=TurnOutcome,
            )
        except ActivityError as failure:
            cause = failure.cause
            exhausted = failure.retry_state in (
                RetryState.MAXIMUM_ATTEMPTS_REACHED,
                RetryState.TIMEOUT,
            )
            attempts = allowed
            if not exhausted and isinstance(cause, ApplicationError) and cause.details:
                detail = cause.details[0]
                attempts = int(detail.get("attempt", 1)) if isinstance(detail, dict) else 1
            message = getattr(cause, "message", None) or str(cause or failure)
            if not isinstance(cause, ApplicationError):
                message = f"no answer within the deadline of {policy.deadline.total_seconds():g}s"
            driver.turn_failed(speaker, attempts, message, workflow.now())
            return None
        turn = ConversationTurn(
            index=index,
            speaker=speaker.name,
            turn_id=tid,
            text=outcome.text,
            usage=outcome.usage,
            attempts=outcome.attempts,
            started_at=started,
            ended_at=workflow.now(),
        )
        return turn, outcome.transcript_ref

    async def _nested(
        self,
        driver: ConversationDriver,
        speaker: Participant,
        request: ConversationInput,
        tid: str,
        started: datetime,
    ) -> tuple[ConversationTurn, str | None] | None:
        assert speaker.conversation is not None
        depth = request.depth + 1
        refused = driver.nesting_refused(speaker, depth)
        if refused is not None:
            driver.fail(speaker, refused)
            return None
        inner = conversation_definition(speaker.conversation)
        try:
            result: ConversationResult = await workflow.execute_child_workflow(
                CONVERSATION_WORKFLOW,
                ConversationInput(
                    conversation=inner.name,
                    seed=driver.nested_seed(),
                    depth=depth,
                    parent_turn=tid,
                ),
                id=tid,
                result_type=ConversationResult,
                static_summary=inner.summary[:200],
                execution_timeout=None,
                run_timeout=None,
                task_timeout=timedelta(seconds=10),
            )
        except ChildWorkflowError as failure:
            driver.fail(speaker, str(failure.cause or failure))
            return None
        failed = nested_failure(speaker, result)
        if failed is not None:
            driver.fail(speaker, failed)
            return None
        text = nested_text(result)
        index = len(driver.transcript)
        # The outer stream sees the inner conversation as one delta; its own run has the rest.
        self._live.publish(
            LiveEvent(kind="token", step=index, turn=index, offset=0, text=text, at=workflow.now())
        )
        turn = ConversationTurn(
            index=index,
            speaker=speaker.name,
            turn_id=tid,
            text=text,
            usage=result.usage,
            attempts=1,
            started_at=started,
            ended_at=workflow.now(),
        )
        return turn, None
