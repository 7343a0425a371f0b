"""The substrate-free pieces of live streams: deduplicated deltas and joined entries."""

from __future__ import annotations

from durable import LiveEvent, TokenDeltas
from durable._live import joined_tokens, text_end


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
