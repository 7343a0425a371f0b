"""Child runs, written once: ``call_agent``, ``start_agent`` and the delegation policy.

A child run is another agent's run started by this one. Each substrate gives
one primitive, ``_start_child``: it takes the next position, starts the child
(a child workflow on Temporal, a run in the same store locally) and returns a
task that resolves to the child's envelope ``{"run_id", "result", "usage"}``
or raises ``DurableChildRunFailedError``. Everything else lives here once: the
policy checks and their order (seed 004), the child's id and manifest, the
typed result, and leaving no orphan when the parent ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args, overload

from ._canonical import canonical_hash
from ._errors import DurableDelegationError, DurableRunCancelledError
from ._names import check_name
from ._records import DelegationPolicy, DurableRunManifest, StepKind
from ._registry import AgentDefinition, agent_definition
from ._retry import RetryPolicy, as_timedelta

__all__ = [
    "DELEGATION_REASONS",
    "ChildCalls",
    "ChildRun",
    "ChildSpec",
    "DelegationReason",
    "cancelled_here",
    "child_conversation",
    "child_envelope",
]

if TYPE_CHECKING:
    from ._context import DurableContext
    from .conversation import Conversation, ConversationResult, ConversationRun

T = TypeVar("T")

DelegationReason = Literal[
    "delegation_disabled",
    "agent_not_allowed",
    "max_delegation_depth_exceeded",
    "max_child_agent_calls_exceeded",
    "max_parallel_child_agent_calls_exceeded",
]
DELEGATION_REASONS: tuple[DelegationReason, ...] = get_args(DelegationReason)
"""Why a delegation was refused, in the order the checks run (the reference's names)."""


def cancelled_here() -> bool:
    """Whether the task running this code was itself cancelled: a child call the agent
    stopped awaiting (a timeout of its own) ends as the agent's cancellation."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def child_envelope(run_id: str, result: Any, usage: Mapping[str, Any]) -> dict[str, Any]:
    """What a child run hands its parent, and what the parent's step records."""
    return {"run_id": run_id, "result": result, "usage": dict(usage)}


@dataclass(frozen=True)
class ChildSpec:
    """One child run as the parent asks for it; the substrate starts it."""

    definition: AgentDefinition
    manifest: DurableRunManifest
    run_id: str
    intent: str
    kind: StepKind
    input_hash: str
    timeout: timedelta | None = None
    retry: RetryPolicy | None = None
    forward: Mapping[str, str] | None = None
    """Events of the parent passed on to the child as they arrive: parent key -> child key."""
    summary: str | None = None
    """What the child is, for people (the Temporal UI); by default its agent's description."""


class ChildRun(Generic[T]):
    """A started child run: ``await`` it for the child's typed result.

    Awaiting it again returns the same result. A child that failed, was
    cancelled or timed out raises ``DurableChildRunFailedError`` with its run
    id and its own error code.
    """

    def __init__(self, run_id: str, task: asyncio.Future[dict[str, Any]], decode: Any) -> None:
        self.run_id = run_id
        self._task = task
        self._decode = decode

    def done(self) -> bool:
        return self._task.done()

    async def result(self) -> T:
        envelope = await self._task
        value: T = self._decode(envelope["result"], what=f"the result of child run {self.run_id!r}")
        return value

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()


class ChildCalls:
    """The child-run half of ``DurableContext``, shared by every substrate's context.

    A substrate provides ``_start_child``, ``_next_position``, ``_own_manifest``,
    ``_cancel_reason`` and ``run_id``/``project_id``/``scenario_id``, and calls
    ``_settle_children`` before its run ends.
    """

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    @property
    def project_id(self) -> str:
        raise NotImplementedError

    @property
    def scenario_id(self) -> str | None:
        raise NotImplementedError

    def _init_children(self) -> None:
        self._child_tasks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._calls_made = 0
        self._in_flight = 0

    # -- what each substrate provides --------------------------------------

    def _own_manifest(self) -> DurableRunManifest:
        raise NotImplementedError

    def _own_policy(self) -> DelegationPolicy | None:
        raise NotImplementedError

    def _next_position(self) -> int:
        raise NotImplementedError

    def _cancel_reason(self) -> str | None:
        raise NotImplementedError

    async def _start_child(self, spec: ChildSpec) -> asyncio.Future[dict[str, Any]]:
        raise NotImplementedError

    async def _cancel_child(self, task: asyncio.Future[dict[str, Any]], reason: str) -> None:
        """Cancel one child in flight and wait until it has settled."""
        task.cancel(reason)
        await asyncio.gather(task, return_exceptions=True)

    # -- the public API ------------------------------------------------------

    @overload
    async def call_agent(
        self,
        agent: Callable[[Any, Any], Awaitable[T]],
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> T: ...
    @overload
    async def call_agent(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any: ...
    async def call_agent(
        self,
        agent: Any,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        handle: ChildRun[Any] = await self.start_agent(
            agent, input, run_id=run_id, timeout=timeout, retry=retry
        )
        return await handle

    @overload
    async def start_agent(
        self,
        agent: Callable[[Any, Any], Awaitable[T]],
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[T]: ...
    @overload
    async def start_agent(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[Any]: ...
    async def start_agent(
        self,
        agent: Any,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[Any]:
        definition = agent_definition(agent)
        self._check_delegation(definition.name)
        own = self._own_manifest()
        policy = self._effective_policy()
        ceiling = (
            policy.max_depth if own.max_depth is None else min(own.max_depth, policy.max_depth)
        )
        manifest = self._child_manifest(definition, input).model_copy(
            update={"depth": own.depth + 1, "max_depth": ceiling}
        )
        spec = self._spec(
            definition, manifest, name=definition.name, run_id=run_id, kind="agent",
            intent=f"agent:{definition.name}", timeout=timeout, retry=retry,
        )  # fmt: skip
        self._calls_made += 1  # spent only once the checks passed
        return await self._launch(spec)

    async def _start_internal(
        self,
        definition: AgentDefinition,
        input: Any,
        *,
        name: str,
        intent: str,
        kind: StepKind,
        forward: Mapping[str, str] | None = None,
        summary: str | None = None,
        input_hash: str | None = None,
    ) -> ChildRun[Any]:
        """A child run the project starts itself (a conversation): no delegation budget."""
        manifest = self._child_manifest(definition, input)
        own = self._own_manifest()
        manifest = manifest.model_copy(update={"depth": own.depth, "max_depth": own.max_depth})
        spec = self._spec(
            definition, manifest, name=name, run_id=None, kind=kind, intent=intent, forward=forward
        )
        spec = replace(spec, summary=summary, input_hash=input_hash or spec.input_hash)
        return await self._launch(spec)

    async def conversation(
        self,
        conversation: Conversation,
        *,
        seed: str,
        abort_on: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ConversationResult:
        from .conversation import conversation_call, conversation_run

        conversation_call(conversation, seed, abort_on)  # checks abort_on
        run = conversation_run(conversation, seed, headers=headers)
        return await self._conversation(run, abort_on=abort_on)

    async def _conversation(
        self, run: ConversationRun, *, abort_on: str | None = None
    ) -> ConversationResult:
        """Run ``run`` as a child run of kind ``conversation`` (depth and turn included)."""
        from .conversation import (
            ABORT_EVENT,
            CONVERSATION_AGENT,
            conversation_call,
            conversation_definition,
        )

        definition = conversation_definition(run.conversation)
        # The fingerprint conversations always had: runs recorded before they became
        # child runs still match at this position.
        _, fingerprint = conversation_call(definition, run.seed, abort_on)
        handle = await self._start_internal(
            agent_definition(CONVERSATION_AGENT),
            run,
            name="conversation",
            intent=f"conversation:{run.conversation}",
            kind="conversation",
            forward=None if abort_on is None else {abort_on: ABORT_EVENT},
            summary=definition.summary,
            input_hash=fingerprint,
        )
        result: ConversationResult = await handle
        return result

    # -- shared mechanics ----------------------------------------------------

    def _effective_policy(self) -> DelegationPolicy:
        return self._own_policy() or DelegationPolicy(enabled=False)

    def _check_delegation(self, agent: str) -> None:
        """The reference's checks, in its order; a refusal spends nothing."""
        reason = self._cancel_reason()
        if reason is not None:
            raise DurableRunCancelledError(
                f"run {self.run_id!r} was cancelled ({reason}); it starts no child runs",
                reason=reason,
            )
        policy = self._own_policy()
        own = self._own_manifest()
        label = f"run {self.run_id!r} may not call agent {agent!r}"
        if policy is None or not policy.enabled:
            self._refuse(
                "delegation_disabled",
                agent,
                f"{label}: delegation is disabled; pass delegation=DelegationPolicy(...) to "
                "@agent or to the run",
            )
            return
        if policy.allowed_agents is not None and agent not in policy.allowed_agents:
            allowed = ", ".join(policy.allowed_agents) or "none"
            self._refuse(
                "agent_not_allowed",
                agent,
                f"{label}: it is not in the policy's allowed_agents ({allowed}); add "
                f"{agent!r} to allowed_agents if it may",
            )
        ceiling = own.max_depth
        if own.depth + 1 > policy.max_depth:
            self._refuse(
                "max_delegation_depth_exceeded",
                agent,
                f"{label}: the child would run at depth {own.depth + 1}, beyond this run's own "
                f"max_depth={policy.max_depth}; depth counts from the run a caller started, so "
                "raise max_depth in this agent's DelegationPolicy (and its ancestors')",
            )
        if ceiling is not None and own.depth + 1 > ceiling:
            self._refuse(
                "max_delegation_depth_exceeded",
                agent,
                f"{label}: the child would run at depth {own.depth + 1}, beyond max_depth="
                f"{ceiling} of an ancestor's DelegationPolicy; raise it there",
            )
        if self._calls_made >= policy.max_calls:
            self._refuse(
                "max_child_agent_calls_exceeded",
                agent,
                f"{label}: the run has made all {policy.max_calls} calls its policy allows "
                "(max_calls)",
            )
        if self._in_flight >= policy.max_parallel:
            self._refuse(
                "max_parallel_child_agent_calls_exceeded",
                agent,
                f"{label}: {self._in_flight} child runs are in flight, the most its policy "
                "allows (max_parallel); await one first",
            )

    @staticmethod
    def _refuse(reason: DelegationReason, agent: str, message: str) -> None:
        raise DurableDelegationError(f"{message} [{reason}]", reason=reason, agent=agent)

    def _child_manifest(self, definition: AgentDefinition, input: Any) -> DurableRunManifest:
        manifest = definition.manifest(
            input, project_id=self.project_id, scenario_id=self.scenario_id
        )
        return manifest.model_copy(update={"parent_run_id": self.run_id})

    def _spec(
        self,
        definition: AgentDefinition,
        manifest: DurableRunManifest,
        *,
        name: str,
        run_id: str | None,
        kind: StepKind,
        intent: str,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        forward: Mapping[str, str] | None = None,
    ) -> ChildSpec:
        child_id = run_id or f"{self.run_id}/{name}-{self._next_position()}"
        check_name(child_id, what="child run id")
        limit = None if timeout is None else as_timedelta(timeout, what="child run timeout")
        if limit is not None and limit <= timedelta(0):
            raise ValueError("a child run timeout must be positive; pass seconds > 0")
        fingerprint = canonical_hash(
            {"agent": definition.name, "input": manifest.input, "run_id": child_id}
        )
        return ChildSpec(
            definition=definition,
            manifest=manifest,
            run_id=child_id,
            intent=intent,
            kind=kind,
            input_hash=fingerprint,
            timeout=limit,
            retry=retry,
            forward=forward,
        )

    async def _launch(self, spec: ChildSpec) -> ChildRun[Any]:
        """Start the child; it is in flight from now until it settles."""
        self._in_flight += 1
        try:
            task = await self._start_child(spec)
        except BaseException:
            self._in_flight -= 1
            raise
        self._child_tasks[spec.run_id] = task

        def settled(_: object) -> None:
            self._in_flight -= 1
            self._child_tasks.pop(spec.run_id, None)

        task.add_done_callback(settled)
        return ChildRun(spec.run_id, task, spec.definition.output.decode)

    async def _settle_children(self, reason: str) -> None:
        """Cancel every child still in flight and wait for each to settle: no orphans."""
        for task in list(self._child_tasks.values()):
            if not task.done():
                await self._cancel_child(task, reason)


async def child_conversation(
    ctx: DurableContext, run: ConversationRun, *, abort_on: str | None = None
) -> ConversationResult:
    """Run a conversation as a child run of ``ctx``'s run, with ``run``'s depth and turn.

    What a conversation uses to run a participant that is itself a conversation.
    """
    if not isinstance(ctx, ChildCalls):
        raise TypeError(f"{type(ctx).__name__} cannot start child runs; use a substrate's context")
    return await ctx._conversation(run, abort_on=abort_on)
