"""The live stream of a run: what a watcher sees while it runs.

Every substrate publishes the same ``LiveEvent`` kinds: steps starting,
retrying and finishing, model token deltas, waits, and the end of the run.
The stream is progress, not state: replaying a run never reads it.

Token deltas carry their character offset in the step's text. ``TokenDeltas``
publishes only text past what earlier attempts of the same step already
published, so a retried model call never shows its text twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal, TextIO, get_args

from pydantic import BaseModel, ConfigDict

__all__ = [
    "FINAL_KINDS",
    "LIVE_KINDS",
    "RETRY_MESSAGE_LIMIT",
    "LiveEvent",
    "LiveKind",
    "LiveView",
    "TokenDeltas",
    "joined_tokens",
    "live_position_error",
    "live_tokens",
    "publish_step_entry",
    "publish_token",
    "retry_entry",
    "tag_turn",
    "text_end",
]

LiveKind = Literal[
    "step_started",
    "step_retry",
    "token",
    "step_completed",
    "step_failed",
    "waiting",
    "event_received",
    "wait_timed_out",
    "sleeping",
    "approval_requested",
    "approval_resolved",
    "conversation",
    "run_resumed",
    "run_completed",
    "run_failed",
    "run_cancelled",
]
LIVE_KINDS: tuple[LiveKind, ...] = get_args(LiveKind)
FINAL_KINDS: frozenset[str] = frozenset({"run_completed", "run_failed", "run_cancelled"})


class LiveEvent(BaseModel):
    """One entry of a run's live stream.

    ``seq`` is the entry's position in the run's stream, set when it is read;
    pass the last one seen as ``after`` to continue watching from there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LiveKind
    seq: int = 0
    step: int | None = None
    intent: str | None = None
    attempt: int | None = None
    offset: int | None = None
    """Token deltas: where ``text`` starts in the step's text."""
    text: str | None = None
    key: str | None = None
    """Waits: the event key waited for. Approvals: the approval's id (``intent``: its
    action; ``text``: its summary, or the decision once resolved)."""
    until: datetime | None = None
    error: str | None = None
    """Failures and retries: the error's message, as its step record keeps it."""
    error_type: str | None = None
    """Retries: the class name of the error that failed the previous attempt."""
    delay: float | None = None
    """Retries: the seconds between the previous attempt's failure and this attempt."""
    turn: int | None = None
    """Conversation turns: the turn a token delta or conversation event belongs to."""
    detail: dict[str, Any] | None = None
    """Conversation events: the event as the conversation protocol names it.
    ``run_resumed`` (local runs): its ``kind``, ``crash`` (the previous worker's
    lease lapsed and was taken over; with ``recoveries`` and ``previous_worker``)
    or ``explicit``, and the ``worker`` that resumed the run."""
    at: datetime | None = None

    @property
    def final(self) -> bool:
        """True for the run's last entry: it completed or failed."""
        return self.kind in FINAL_KINDS


RETRY_MESSAGE_LIMIT = 300
"""The most characters of an error's message a retry entry carries."""


def retry_entry(
    step: int | None,
    attempt: int,
    *,
    error_type: str | None,
    message: str | None,
    delay: float | None,
    intent: str | None = None,
    turn: int | None = None,
    detail: dict[str, Any] | None = None,
) -> LiveEvent:
    """The entry announcing ``attempt`` of a step (``step_retry``) or, given the
    conversation event's ``detail``, of a conversation turn (``turn_retry``).

    It says why: the previous attempt's error type and message (the message its
    step record keeps, cut to ``RETRY_MESSAGE_LIMIT``), and the delay waited since.
    ``None`` where a substrate could not learn it.
    """
    if message is not None and len(message) > RETRY_MESSAGE_LIMIT:
        message = message[: RETRY_MESSAGE_LIMIT - 1] + "…"
    if detail is not None and message is not None:
        detail = {**detail, "reason": message}
    return LiveEvent(
        kind="step_retry" if detail is None else "conversation",
        step=step,
        intent=intent,
        attempt=attempt,
        turn=turn,
        detail=detail,
        error=message,
        error_type=error_type,
        delay=None if delay is None else round(max(delay, 0.0), 3),
    )


def text_end(events: Iterable[LiveEvent], step: int, turn: int | None = None) -> int:
    """How far into ``step``'s text the token deltas among ``events`` reach.

    A step's text is one text whatever turn it is tagged with; ``turn`` narrows
    the search to that turn's deltas.
    """
    end = 0
    for event in events:
        if (
            event.kind == "token"
            and event.step == step
            and (turn is None or event.turn == turn)
            and event.text is not None
        ):
            end = max(end, (event.offset or 0) + len(event.text))
    return end


def joined_tokens(first: LiveEvent, then: LiveEvent) -> LiveEvent | None:
    """One token entry for two that follow each other in the same text, else ``None``."""
    if (
        first.kind == then.kind == "token"
        and (first.step, first.turn) == (then.step, then.turn)
        and (first.offset or 0) + len(first.text or "") == (then.offset or 0)
    ):
        return first.model_copy(update={"text": (first.text or "") + (then.text or "")})
    return None


class TokenDeltas:
    """Turns one step's streamed fragments into deduplicated token events.

    ``shown`` is how much of the step's text earlier attempts already
    published. Each attempt restarts at offset 0; text before ``shown`` is
    dropped and a fragment straddling it is trimmed.
    """

    def __init__(
        self,
        step: int,
        publish: Callable[[LiveEvent], None],
        *,
        shown: int = 0,
        turn: int | None = None,
    ) -> None:
        self.step = step
        self.turn = turn
        self.shown = shown
        self._publish = publish
        self._position = 0

    def new_attempt(self) -> None:
        self._position = 0

    def publish_entry(self, event: LiveEvent) -> None:
        """Publish another entry of this step, stamped with its position and turn."""
        self._publish(event.model_copy(update={"step": self.step, "turn": self.turn}))

    def push(self, text: str) -> None:
        start = self._position
        self._position += len(text)
        if not text or self._position <= self.shown:
            return
        if start < self.shown:
            text = text[self.shown - start :]
            start = self.shown
        self.shown = self._position
        self._publish(
            LiveEvent(kind="token", step=self.step, turn=self.turn, offset=start, text=text)
        )


_current: ContextVar[TokenDeltas | None] = ContextVar("durable_token_deltas", default=None)


@contextmanager
def live_tokens(deltas: TokenDeltas | None) -> Iterator[None]:
    """Route ``publish_token`` calls made inside the block to ``deltas``."""
    token = _current.set(deltas)
    try:
        yield
    finally:
        _current.reset(token)


def publish_token(text: str) -> None:
    """Publish a streamed fragment of the running step's text to the run's live stream.

    A no-op outside a step run by a substrate, so step functions may call it freely.
    """
    deltas = _current.get()
    if deltas is not None:
        deltas.push(text)


def tag_turn(turn: int) -> None:
    """Tag the running step's token deltas as the text of conversation turn ``turn``.

    A no-op outside a step run by a substrate. Deduplication across attempts is
    unchanged: a step's text is one text, whatever turn it belongs to.
    """
    deltas = _current.get()
    if deltas is not None:
        deltas.turn = turn


def publish_step_entry(event: LiveEvent) -> None:
    """Publish ``event`` on the run's live stream as an entry of the running step.

    For what only the step knows, such as why a conversation turn is retried.
    A no-op outside a step run by a substrate.
    """
    deltas = _current.get()
    if deltas is not None:
        deltas.publish_entry(event)


class LiveView:
    """Renders a run's live entries: token deltas inline, everything else a line each."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._streaming: tuple[int | None, int | None] | None = None  # whose text is written

    def _line(self, event: LiveEvent, text: str) -> None:
        if self._streaming is not None:
            self._out.write("\n")
            self._streaming = None
        at = event.at.strftime("%H:%M:%S") if event.at else "--:--:--"
        self._out.write(f"{at}  {text}\n")

    def show(self, event: LiveEvent) -> None:
        step = f"step {event.step}"
        if event.kind == "token":
            source = (event.step, event.turn)
            if self._streaming != source:
                speaks = f"{step} turn {event.turn}" if event.turn is not None else step
                self._line(event, f"{speaks} streams:")
                self._streaming = source
            self._out.write(event.text or "")
        elif event.kind == "conversation":
            detail = event.detail or {}
            retry = detail.get("type") == "turn_retry" and event.error is not None
            words = [
                str(detail.get(k))
                for k in ("type", "index", "speaker", *(() if retry else ("reason",)))
                if detail.get(k) is not None
            ]
            reason = _retry_reason(event) if retry else ""
            self._line(event, "conversation " + " ".join(words) + reason)
        elif event.kind == "step_started":
            self._line(event, f"{step} started: {event.intent}")
        elif event.kind == "step_retry":
            retrying = f"{step} retrying: attempt {event.attempt} of {event.intent}"
            self._line(event, retrying + _retry_reason(event))
        elif event.kind == "step_completed":
            self._line(event, f"{step} completed")
        elif event.kind == "step_failed":
            self._line(event, f"{step} failed: {event.error}")
        elif event.kind == "waiting":
            until = f" until {event.until.isoformat()}" if event.until else ""
            self._line(event, f"waiting for event `{event.key}`{until}")
        elif event.kind == "event_received":
            self._line(event, f"event `{event.key}` received")
        elif event.kind == "wait_timed_out":
            self._line(event, f"gave up waiting for event `{event.key}`")
        elif event.kind == "approval_requested":
            self._line(event, f"approval {event.key} requested: {event.intent}: {event.text}")
        elif event.kind == "approval_resolved":
            by = (event.detail or {}).get("decided_by")
            self._line(event, f"approval {event.key}: {event.text} by {by}")
        elif event.kind == "sleeping":
            self._line(event, f"sleeping until {event.until.isoformat() if event.until else '?'}")
        elif event.kind == "run_resumed":
            self._line(event, _resumed(event.detail or {}))
        elif event.kind == "run_completed":
            self._line(event, "run completed")
        elif event.kind == "run_failed":
            self._line(event, f"run failed: {event.error}")
        self._out.flush()


def _resumed(detail: dict[str, Any]) -> str:
    """``run resumed by worker W after worker V died (recovery 2)``, or without the cause."""
    said = f"run resumed by worker {detail.get('worker')}"
    if detail.get("kind") != "crash":
        return said
    return (
        f"{said} after worker {detail.get('previous_worker')} died "
        f"(recovery {detail.get('recoveries')})"
    )


def _retry_reason(event: LiveEvent) -> str:
    """`` after ConnectionError: refused (waited 0.5s)`` for a retry entry that says why."""
    if event.error is None and event.error_type is None:
        return ""
    what = ": ".join(p for p in (event.error_type, event.error) if p)
    waited = "" if event.delay is None else f" (waited {event.delay:g}s)"
    return f" after {what}{waited}"


def live_position_error(run_id: str, after: int, end: int) -> ValueError:
    """``after`` is no position the run's live stream gave out; the same on every substrate."""
    if after < 0:
        return ValueError(
            f"after={after} is not a position in the live stream of run {run_id!r}: positions "
            "start at 1; pass 0 for the whole stream, or the seq of an entry read from it"
        )
    return ValueError(
        f"after={after} is not a position in the live stream of run {run_id!r}, which holds "
        f"{end} entries so far; pass 0, or the seq of an entry read from this stream"
    )
