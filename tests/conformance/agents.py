"""Agents and steps the conformance scenarios run on every substrate.

They live at module level because steps must be importable by name on every
worker. ``CALLS`` counts real executions of each step; ``KNOBS`` lets a
scenario change the code's behaviour between a crash and a resume, the way a
deploy would.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

import durable_agents.agents.conversation  # noqa: F401  (registers the conversation agent and its turn step)
from durable import (
    DurableAwaitEventTimeoutError,
    DurableContext,
    DurableError,
    DurableResultNotSerializableError,
    DurableStepFailedError,
    RetryPolicy,
    agent,
    step,
)
from durable.conversation import (
    REFERENCE_FORWARD_HEADERS,
    CallPolicy,
    ConversationPolicy,
    ConversationResult,
    DriveState,
    HaltContext,
    HaltSignal,
    Participant,
    conversation_definition,
    define_conversation,
    transient_errors,
)
from durable_agents.activities.llm import chat, model_defaults

with workflow.unsafe.imports_passed_through():
    # Shared with this module's copies inside the workflow sandbox (see tests.shared_state).
    from tests.shared_state import shared

CALLS: Counter[str] = shared(__name__, "CALLS", Counter)
KNOBS: dict[str, Any] = shared(__name__, "KNOBS", dict)
OBSERVED: list[Any] = shared(__name__, "OBSERVED", list)

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=5)


def reset() -> None:
    CALLS.clear()
    KNOBS.clear()
    OBSERVED.clear()


class Job(BaseModel):
    n: int = 1
    key: str = "go"
    timeout: float | None = None
    seconds: float = 0.0
    marker: str = ""
    target: str = ""
    heartbeat: float | None = None


class Report(BaseModel):
    total: int
    label: str
    made_at: datetime


class Approval(BaseModel):
    approved: bool
    by: str


@step
async def add_one(n: int) -> int:
    CALLS["add_one"] += 1
    return n + 1


@step(local=True)
async def add_one_nearby(n: int) -> int:
    """The same work as ``add_one``, as a Temporal local activity."""
    CALLS["add_one_nearby"] += 1
    return n + 1


@step
async def make_report(total: int) -> Report:
    CALLS["make_report"] += 1
    return Report(total=total, label=f"total={total}", made_at=datetime(2026, 1, 2, 3, 4, 5))


@step
async def pair(n: int) -> tuple[int, str]:
    CALLS["pair"] += 1
    return (n, str(n))


@step
async def observe(value: Any) -> None:
    CALLS["observe"] += 1
    OBSERVED.append(value)


@step(retry=FAST_RETRY)
async def flaky(failures: int) -> str:
    CALLS["flaky"] += 1
    if CALLS["flaky"] <= failures:
        raise ConnectionError(f"upstream refused attempt {CALLS['flaky']}")
    return "ok"


@step(
    retry=RetryPolicy(
        initial_interval=timedelta(milliseconds=10),
        maximum_attempts=5,
        non_retryable_error_types=("ValueError",),
    )
)
async def reject(value: int) -> int:
    CALLS["reject"] += 1
    raise ValueError(f"value {value} is out of range")


class UpstreamBusy(Exception):
    """Says how long to wait, as a rate-limited model endpoint does."""

    retry_after = 0.3


class UpstreamRefused(Exception):
    """Says that retrying cannot help, as a 400 from a model endpoint does."""

    retryable = False


@step(retry=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3))
async def hinted(kind: str) -> str:
    CALLS[kind] += 1
    if kind == "busy" and CALLS[kind] == 1:
        raise UpstreamBusy("rate limited, retry in 0.3s")
    if kind == "refused":
        raise UpstreamRefused("the request itself is wrong")
    return "ok"


@step(retry=FAST_RETRY)
async def opaque() -> Any:
    CALLS["opaque"] += 1
    return object()


@step(
    timeout=0.1, retry=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2)
)
async def stall() -> None:
    CALLS["stall"] += 1
    await asyncio.sleep(10)


@step(timeout=600, retry=RetryPolicy(maximum_attempts=1))
async def stall_long() -> None:
    """Registered patient and single-shot; a caller overrides both."""
    CALLS["stall_long"] += 1
    await asyncio.sleep(10)


@step
async def mark(path: str, name: str) -> str:
    """Append ``name`` to a file: counts executions across processes."""
    with open(path, "a") as handle:
        handle.write(name + "\n")
    return name


@agent(name="conformance.pipeline")
async def pipeline(ctx: DurableContext, job: Job) -> dict[str, Any]:
    total = await ctx.step("add one", add_one, job.n)
    report = await ctx.step("make the report", make_report, total)
    return {"total": total, "label": report.label}


@agent(name="conformance.nearby")
async def nearby(ctx: DurableContext, job: Job) -> int:
    first = await ctx.step("first", add_one_nearby, job.n)
    await ctx.await_event(job.key)
    return await ctx.step("second", add_one_nearby, first)


@agent(name="conformance.two_phase")
async def two_phase(ctx: DurableContext, job: Job) -> int:
    first = await ctx.step("first", add_one, job.n)
    second = await ctx.step("second", add_one, first)
    await ctx.await_event(job.key)
    return await ctx.step("third", add_one, second)


@agent(name="conformance.versioned")
async def versioned(ctx: DurableContext, job: Job) -> int:
    intent = KNOBS.get("intent", "first")
    fingerprint = KNOBS.get("fingerprint", {"n": job.n})
    first = await ctx.step(intent, add_one, job.n, input_fingerprint=fingerprint)
    for i in range(KNOBS.get("extra_steps", 0)):
        first = await ctx.step(f"extra {i}", add_one, first)
    if KNOBS.get("wait", True):
        await ctx.await_event(job.key)
    return first


@agent(name="conformance.patched")
async def patched(ctx: DurableContext, job: Job) -> list[str]:
    """A deploy adds a step after "first": ``KNOBS["patch"]`` is the code now running.

    ``None``: the code before the change; ``"patched"``: the change behind
    ``ctx.patched``; ``"deprecated"``: the old path gone; ``"unguarded"``: the
    change with no patch, which a run from before it cannot replay.
    """
    code = KNOBS.get("patch")
    taken: list[str] = []
    first = await ctx.step("first", add_one, job.n)
    if code == "patched":
        if await ctx.patched("check-first"):
            await ctx.step("check", add_one, first)
            taken.append("new")
        else:
            taken.append("old")
    elif code in ("deprecated", "unguarded"):
        if code == "deprecated":
            await ctx.deprecate_patch("check-first")
        await ctx.step("check", add_one, first)
        taken.append("new")
    await ctx.await_event(job.key)
    if code == "patched":
        taken.append(f"asked again: {await ctx.patched('check-first')}")
    await ctx.step("last", add_one, first)
    return taken


@agent(name="conformance.clock")
async def clock(ctx: DurableContext, job: Job) -> dict[str, str]:
    now = await ctx.now()
    ident = await ctx.uuid()
    await ctx.step("observe clock", observe, {"now": now.isoformat(), "uuid": str(ident)})
    await ctx.await_event(job.key)
    return {"now": now.isoformat(), "uuid": str(ident)}


@agent(name="conformance.typed")
async def typed(ctx: DurableContext, job: Job) -> dict[str, str]:
    report = await ctx.step("make the report", make_report, job.n)
    numbers = await ctx.step("pair", pair, job.n)
    kinds = {
        "report": type(report).__name__,
        "made_at": type(report.made_at).__name__,
        "pair": type(numbers).__name__,
    }
    await ctx.step("observe kinds", observe, kinds)
    await ctx.await_event(job.key)
    return kinds


@agent(name="conformance.waiter")
async def waiter(ctx: DurableContext, job: Job) -> Any:
    return await ctx.await_event(job.key, timeout=job.timeout)


@agent(name="conformance.approval_waiter")
async def approval_waiter(ctx: DurableContext, job: Job) -> Approval:
    return await ctx.await_event(job.key, timeout=job.timeout, type=Approval)


@agent(name="conformance.gate", events={"approval": Approval})
async def gate(ctx: DurableContext, job: Job) -> str:
    approval = await ctx.await_event("approval")  # typed by the declaration
    return f"{type(approval).__name__}:{approval.by}"


@agent(name="conformance.ask")
async def ask(ctx: DurableContext, job: Job) -> dict[str, Any]:
    """Asks the model named by ``job.key``, then waits for ``job.marker`` if given."""
    answer = await chat(
        ctx, "ask the model", model=job.key, messages=f"question {job.n}", heartbeat=job.heartbeat
    )
    if job.marker:
        await ctx.await_event(job.marker)
    usage = answer.usage
    return {"text": answer.text, "tokens": [usage.input_tokens, usage.output_tokens],
            "cost": usage.cost}  # fmt: skip


# A model whose calls get one attempt unless a call says otherwise.
model_defaults("one-shot", retry=RetryPolicy(maximum_attempts=1))


@agent(name="conformance.ask_twice")
async def ask_twice(ctx: DurableContext, job: Job) -> str:
    first = await chat(ctx, "draft", model=job.key, messages="draft it")
    second = await chat(ctx, "review", model=job.key, messages=f"review: {first.text}")
    return second.text


@agent(name="conformance.relay")
async def relay(ctx: DurableContext, job: Job) -> list[Any]:
    """Sends an event into another run twice (first emit wins), then into no run at all."""
    first = await ctx.emit_event(job.key, {"from": ctx.run_id}, run_id=job.target)
    second = await ctx.emit_event(job.key, {"from": "again"}, run_id=job.target)
    try:
        await ctx.emit_event(job.key, {}, run_id=f"{job.target}-missing")
    except DurableError as exc:
        return [first, second, exc.code.value]
    return [first, second, None]


@agent(name="conformance.two_waits")
async def two_waits(ctx: DurableContext, job: Job) -> list[Any]:
    first = await ctx.await_event("first")
    second = await ctx.await_event("second")
    return [first, second]


@agent(name="conformance.emitter")
async def emitter(ctx: DurableContext, job: Job) -> dict[str, Any]:
    accepted = await ctx.emit_event(job.key, {"from": "agent"})
    payload = await ctx.await_event(job.key)
    await ctx.await_event("finish")
    return {"accepted": accepted, "payload": payload}


@agent(name="conformance.timeout_handler")
async def timeout_handler(ctx: DurableContext, job: Job) -> str:
    try:
        await ctx.await_event(job.key, timeout=job.timeout)
    except DurableAwaitEventTimeoutError:
        return "timed out"
    return "arrived"


@agent(name="conformance.retrying")
async def retrying(ctx: DurableContext, job: Job) -> str:
    return await ctx.step("call a flaky upstream", flaky, job.n)


@agent(name="conformance.hinted")
async def hinted_agent(ctx: DurableContext, job: Job) -> str:
    return await ctx.step("call an upstream that gives retry hints", hinted, job.key)


@agent(name="conformance.rejecting")
async def rejecting(ctx: DurableContext, job: Job) -> int:
    return await ctx.step("validate", reject, job.n)


@agent(name="conformance.unserializable")
async def unserializable(ctx: DurableContext, job: Job) -> Any:
    return await ctx.step("return an opaque object", opaque)


@agent(name="conformance.impatient")
async def impatient(ctx: DurableContext, job: Job) -> None:
    """Calls a step registered with 10 minutes of patience, with a tighter budget."""
    await ctx.step(
        "stall briefly",
        stall_long,
        timeout=0.1,
        retry=RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3),
    )


@agent(name="conformance.stalling")
async def stalling(ctx: DurableContext, job: Job) -> None:
    await ctx.step("stall", stall)


@agent(name="conformance.sleeper")
async def sleeper(ctx: DurableContext, job: Job) -> str:
    before = await ctx.now()
    await ctx.sleep(job.seconds)
    after = await ctx.now()
    return f"{(after - before).total_seconds():.3f}"


@agent(name="conformance.survivor")
async def survivor(ctx: DurableContext, job: Job) -> list[str]:
    """Catches failed steps and goes on: replay must raise the same errors again."""
    caught = []
    try:
        await ctx.step("validate", reject, job.n)
    except DurableStepFailedError as exc:
        caught.append(f"{exc.code}:{exc.error_type}:{exc.message}")
    try:
        await ctx.step("return an opaque object", opaque)
    except DurableResultNotSerializableError as exc:
        caught.append(f"{exc.code}:{exc.message}")
    await ctx.step("observe", observe, caught)
    await ctx.await_event(job.key)
    return caught


@agent(name="conformance.marked")
async def marked(ctx: DurableContext, job: Job) -> list[str]:
    """Steps that leave a trace in a file, so a killed process can be audited."""
    done = [await ctx.step("first", mark, job.marker, "first")]
    done.append(await ctx.step("second", mark, job.marker, "second"))
    await ctx.await_event(job.key)
    done.append(await ctx.step("third", mark, job.marker, "third"))
    return done


def marks(path: str) -> list[str]:
    file = Path(path)
    return file.read_text().split() if file.exists() else []


# Conversations. Models are served by tests.support.llm_server; "ok" answers
# "Durable hello" for 12 tokens in and 3 out, 1.05 cents at the tests' prices.


def _two(model: str = "ok") -> list[Participant]:
    return [
        Participant(name="alice", model=model),
        Participant(name="bob", label="Bob", model="ok"),
    ]


define_conversation(
    "conformance.debate",
    participants=_two(),
    policy=ConversationPolicy(max_turns=4, turn_order="alternate"),
)
define_conversation(
    "conformance.trio",
    participants=[Participant(name=n, model="ok") for n in ("ann", "ben", "cy")],
    policy=ConversationPolicy(max_turns=5, turn_order="round_robin"),
)
define_conversation(
    "conformance.pairs",
    participants=_two(),
    # Each speaker twice in a row: a deterministic function of the state.
    policy=ConversationPolicy(max_turns=4, turn_order=lambda state: state.turn_index // 2 % 2),
)
define_conversation(
    "conformance.budget",
    participants=_two(),
    policy=ConversationPolicy(max_turns=10, max_credits_cents=2.0),
)
define_conversation(
    "conformance.agree",
    participants=_two(),
    policy=ConversationPolicy(
        max_turns=10,
        halt_on=lambda state: "both said hello" if len(state.transcript) >= 2 else None,
    ),
)
define_conversation(
    "conformance.refused",
    participants=_two(model="bad-request"),
    policy=ConversationPolicy(max_turns=4),
)
# A 500 is an answer, which the reference's default judgment never retries: these
# conversations retry what the error says may pass (transient_errors).
RETRY_TRANSIENT = CallPolicy(
    max_retries=2, backoff=timedelta(milliseconds=50), is_retryable=transient_errors
)
define_conversation(
    "conformance.retried",
    participants=_two(model="flaky"),
    policy=ConversationPolicy(max_turns=2, default_call_policy=RETRY_TRANSIENT),
)
define_conversation(
    "conformance.breaker",
    participants=_two(model="down"),
    policy=ConversationPolicy(
        max_turns=2,
        default_call_policy=CallPolicy(
            max_retries=5,
            backoff=timedelta(milliseconds=50),
            failures_to_open=2,
            is_retryable=transient_errors,
        ),
    ),
)
define_conversation(
    "conformance.unretried",
    participants=_two(model="flaky"),  # the default call policy: two retries, network errors only
    policy=ConversationPolicy(max_turns=2),
)
define_conversation(
    "conformance.dropped",
    participants=_two(model="drop-once"),  # the connection is cut: a network error
    policy=ConversationPolicy(
        max_turns=2, default_call_policy=CallPolicy(backoff=timedelta(milliseconds=10))
    ),
)
define_conversation(
    "conformance.overridden",
    participants=[
        Participant(name="alice", model="flaky", call_policy=RETRY_TRANSIENT),
        Participant(name="bob", model="down"),  # the default: his 500 is not retried
    ],
    policy=ConversationPolicy(max_turns=2),
)
define_conversation(
    "conformance.told_to_wait",
    participants=_two(model="busy-once"),  # 503 with retry-after-ms: 200
    policy=ConversationPolicy(
        max_turns=2,
        default_call_policy=CallPolicy(
            backoff=timedelta(milliseconds=10), jitter=0.0, is_retryable=transient_errors
        ),
    ),
)
define_conversation(
    "conformance.paced",
    participants=_two(model="flaky"),
    policy=ConversationPolicy(
        max_turns=2,
        default_call_policy=CallPolicy(
            backoff=lambda attempt: 0.3 * attempt, jitter=0.0, is_retryable=transient_errors
        ),
    ),
)
define_conversation(
    "conformance.panel",
    participants=[
        Participant(name="panel", conversation="conformance.debate"),
        Participant(name="judge", model="ok"),
    ],
    policy=ConversationPolicy(max_turns=2),
)
define_conversation(
    "conformance.regress",
    participants=[Participant(name="self", conversation="conformance.regress")],
    policy=ConversationPolicy(max_turns=1),
)
define_conversation(
    "conformance.slow",
    participants=_two(model="slow"),
    policy=ConversationPolicy(max_turns=4),
)


define_conversation(
    "conformance.long",
    participants=_two(),
    policy=ConversationPolicy(max_turns=12),
)


for _turns in (10, 40):
    define_conversation(
        f"conformance.turns{_turns}",
        participants=_two(),
        policy=ConversationPolicy(max_turns=_turns),
    )


def _alice_pays_after_her_first_turn(state: DriveState) -> str:
    return "forward-user" if state.turn_index == 0 else "agent-owned"


async def _halt_once_bob_spoke(context: HaltContext) -> HaltSignal | bool:
    if context.last_turn.speaker == "bob":
        return HaltSignal(reason=f"bob spoke at turn {context.last_turn.index}")
    return False


define_conversation(
    "conformance.decided",
    participants=[
        Participant(name="alice", model="ok", auth_source=_alice_pays_after_her_first_turn),
        Participant(name="bob", model="ok"),
    ],
    policy=ConversationPolicy(max_turns=3),
)
define_conversation(
    "conformance.signalled",
    participants=_two(),
    policy=ConversationPolicy(max_turns=10, halt_on=_halt_once_bob_spoke),
)
define_conversation(
    "conformance.gateway",
    participants=_two(),
    policy=ConversationPolicy(
        max_turns=2,
        forward_headers=REFERENCE_FORWARD_HEADERS,
        propagated_headers=("traceparent", "x-tenant"),
    ),
)
define_conversation(
    "conformance.owned",
    participants=[
        Participant(name="alice", model="ok"),  # forwards the user's authorization
        Participant(name="bob", model="ok", auth_source="agent-owned"),
    ],
    policy=ConversationPolicy(max_turns=2),
)


@agent(name="conformance.talk")
async def talk(ctx: DurableContext, job: Job) -> ConversationResult:
    """Runs the conversation named by ``job.key`` on the seed ``topic <n>``."""
    return await ctx.conversation(conversation_definition(job.key), seed=f"topic {job.n}")


@agent(name="conformance.talk_until_stopped")
async def talk_until_stopped(ctx: DurableContext, job: Job) -> ConversationResult:
    """Runs the conversation named by ``job.key``, halting it when event ``stop`` arrives
    (or the event ``job.marker`` names)."""
    conversation = conversation_definition(job.key)
    stop = job.marker or "stop"
    return await ctx.conversation(conversation, seed=f"topic {job.n}", abort_on=stop)


# Boundaries every substrate keeps: run-fatal errors, value sizes and canonical values.


@step
async def sized(n_bytes: int) -> str:
    CALLS["sized"] += 1
    return "x" * n_bytes


@step
async def measure(reading: str) -> float:
    CALLS["measure"] += 1
    return float(reading)  # "nan" and "inf" parse to numbers JSON cannot hold


@agent(name="conformance.swallower")
async def swallower(ctx: DurableContext, job: Job) -> str:
    """Catches everything, as careless agent code does, and returns normally."""
    intent = KNOBS.get("intent", "first")
    fingerprint = KNOBS.get("fingerprint", {"n": job.n})
    try:
        await ctx.step(intent, add_one, job.n, input_fingerprint=fingerprint)
    except Exception as exc:
        return f"swallowed {type(exc).__name__}"
    try:
        await ctx.await_event(job.key)
    except Exception as exc:
        return f"swallowed {type(exc).__name__}"
    return "done"


@agent(name="conformance.oversized_step")
async def oversized_step(ctx: DurableContext, job: Job) -> int:
    text = await ctx.step("make a large result", sized, job.n)
    return len(text)


@agent(name="conformance.oversized_result")
async def oversized_result(ctx: DurableContext, job: Job) -> str:
    return "x" * job.n


@agent(name="conformance.echo")
async def echo(ctx: DurableContext, data: dict[str, Any]) -> dict[str, Any]:
    await ctx.await_event("go")
    return data


@agent(name="conformance.non_finite_step")
async def non_finite_step(ctx: DurableContext, job: Job) -> float:
    return await ctx.step("measure", measure, KNOBS.get("reading", "nan"))


@agent(name="conformance.non_finite_emit")
async def non_finite_emit(ctx: DurableContext, job: Job) -> str:
    try:
        await ctx.emit_event(job.key, {"x": float("inf")})
    except DurableError as exc:
        return exc.code.value
    return "accepted"


@agent(name="conformance.strict")
async def strict(ctx: DurableContext, approval: Approval) -> str:
    return approval.by


@step
async def count_text(text: str) -> int:
    CALLS["count_text"] += 1
    return len(text)


@agent(name="conformance.large_argument")
async def large_argument(ctx: DurableContext, job: Job) -> int:
    return await ctx.step("count the text", count_text, "x" * job.n)
