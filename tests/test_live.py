"""The substrate-free pieces of live streams: deduplicated deltas and joined entries."""

from __future__ import annotations

import io

from durable import LiveEvent, LiveView, TokenDeltas
from durable._live import RETRY_MESSAGE_LIMIT, joined_tokens, retry_entry, text_end


def test_a_retried_attempt_publishes_only_text_beyond_what_was_shown() -> None:
    published: list[LiveEvent] = []
    deltas = TokenDeltas(2, published.append)
    for fragment in ["Dur", "ab"]:
        deltas.push(fragment)
    deltas.new_attempt()  # the stream was cut; the next attempt starts over
    for fragment in ["Du", "rable ", "", "hello"]:
        deltas.push(fragment)

    assert [(e.offset, e.text) for e in published] == [
        (0, "Dur"), (3, "ab"), (5, "le "), (8, "hello")
    ]  # fmt: skip
    assert text_end(published, 2) == 13
    assert text_end(published, 3) == 0


def test_a_later_worker_continues_after_what_the_stream_already_has() -> None:
    published: list[LiveEvent] = []
    deltas = TokenDeltas(0, published.append, shown=5, turn=1)
    for fragment in ["Durable ", "hello"]:
        deltas.push(fragment)

    assert [(e.offset, e.text, e.turn) for e in published] == [(5, "le ", 1), (8, "hello", 1)]


def test_only_adjacent_deltas_of_one_text_are_joined() -> None:
    first = LiveEvent(kind="token", step=1, turn=None, offset=0, text="Dur")
    then = LiveEvent(kind="token", step=1, offset=3, text="able")

    assert joined_tokens(first, then) == first.model_copy(update={"text": "Durable"})
    assert joined_tokens(first, then.model_copy(update={"offset": 4})) is None
    assert joined_tokens(first, then.model_copy(update={"step": 2})) is None
    assert joined_tokens(first, LiveEvent(kind="step_completed", step=1)) is None


def test_a_retry_entry_is_shown_with_its_reason_and_delay() -> None:
    out = io.StringIO()
    view = LiveView(out)
    long = "upstream refused: " + "x" * 400
    step = retry_entry(2, 3, intent="fetch", error_type="ConnectionError", message=long, delay=0.25)
    turn = retry_entry(
        1, 2, turn=0, error_type="ModelUnavailableError", message="answered 429", delay=2,
        detail={"type": "turn_retry", "index": 0, "speaker": "alice", "attempt": 2},
    )  # fmt: skip

    view.show(step)
    view.show(turn)

    assert len(step.error or "") == RETRY_MESSAGE_LIMIT
    assert (step.error or "").endswith("…")
    assert (turn.kind, (turn.detail or {})["reason"]) == ("conversation", "answered 429")
    first, second = out.getvalue().splitlines()
    assert first.startswith("--:--:--  step 2 retrying: attempt 3 of fetch after ConnectionError: ")
    assert first.endswith("… (waited 0.25s)")
    assert second.endswith(
        "conversation turn_retry 0 alice after ModelUnavailableError: answered 429 (waited 2s)"
    )
