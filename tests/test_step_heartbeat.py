"""Step heartbeats: the default timeout, explicit ones winning, and the background beat."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from durable import StepOptions, step, step_definition
from durable._retry import DEFAULT_HEARTBEAT_TIMEOUT
from durable_agents.activities._heartbeat import BEATS_PER_TIMEOUT, _Beat, _Beater, heartbeating


@step
async def unhurried() -> None: ...


@step(heartbeat=40)
async def patient() -> None: ...


@step(heartbeat=timedelta(0))
async def unwatched() -> None: ...


def test_a_step_gets_the_default_heartbeat_timeout() -> None:
    assert timedelta(seconds=5) <= DEFAULT_HEARTBEAT_TIMEOUT <= timedelta(seconds=30)
    assert StepOptions().heartbeat_timeout == DEFAULT_HEARTBEAT_TIMEOUT
    assert step_definition(unhurried).options.heartbeat_timeout == DEFAULT_HEARTBEAT_TIMEOUT


def test_an_explicit_heartbeat_wins() -> None:
    assert step_definition(patient).options.heartbeat_timeout == timedelta(seconds=40)
    assert step_definition(unwatched).options.heartbeat_timeout == timedelta(0)
    default = step_definition(unhurried).options
    assert default.with_overrides(heartbeat=3).heartbeat_timeout == timedelta(seconds=3)
    assert default.with_overrides(timeout=9).heartbeat_timeout == DEFAULT_HEARTBEAT_TIMEOUT
    own = step_definition(patient).options
    assert own.with_overrides(retry=None, timeout=9).heartbeat_timeout == timedelta(seconds=40)
    assert own.with_overrides(heartbeat=2.5).heartbeat_timeout == timedelta(seconds=2.5)


def _environment(beats: list[tuple[Any, ...]], **info: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, **info)
    env.on_heartbeat = lambda *details: beats.append(details)
    return env


async def _quiet(seconds: float) -> None:
    async with heartbeating():
        await asyncio.sleep(seconds)


async def test_a_step_heartbeats_until_it_returns() -> None:
    beats: list[tuple[Any, ...]] = []
    env = _environment(beats, heartbeat_timeout=timedelta(seconds=0.3))

    await env.run(_quiet, 0.45)
    count = len(beats)
    await asyncio.sleep(0.25)

    # One beat every 0.1 s from 0.1 s on; none once the step has returned.
    assert 3 <= count <= 0.45 / (0.3 / BEATS_PER_TIMEOUT)
    assert set(beats) == {()}
    assert len(beats) == count


@pytest.mark.parametrize(
    "info",
    [{"heartbeat_timeout": None}, {"heartbeat_timeout": timedelta(seconds=0.3), "is_local": True}],
)
async def test_no_heartbeat_without_a_timeout_or_for_a_local_activity(info: Any) -> None:
    beats: list[tuple[Any, ...]] = []

    await _environment(beats, **info).run(_quiet, 0.35)

    assert beats == []


async def _checkpoint() -> None:
    async with heartbeating():
        await asyncio.sleep(0.15)
        activity.heartbeat("checkpoint")
        await asyncio.sleep(0.3)


async def test_a_step_that_heartbeats_details_owns_its_heartbeat() -> None:
    beats: list[tuple[Any, ...]] = []
    env = _environment(beats, heartbeat_timeout=timedelta(seconds=0.3))

    await env.run(_checkpoint)

    # The background stopped at the checkpoint, so nothing overwrote it.
    assert beats == [(), ("checkpoint",)]


def test_a_beat_due_before_the_threads_next_look_wakes_it() -> None:
    """The thread sleeps until its earliest beat; a new, sooner one wakes it, and
    one due later than that leaves it asleep (it is seen at the next look)."""
    beater = _Beater()
    slow, fast, later = threading.Event(), threading.Event(), threading.Event()
    beater.add(_Beat(record=slow.set, every=30))
    time.sleep(0.1)  # the thread now sleeps until the slow beat, 30 s away
    beater.add(_Beat(record=fast.set, every=0.05))
    assert fast.wait(2), "a beat due sooner must wake the thread"
    beater.add(_Beat(record=later.set, every=0.2))
    assert later.wait(2), "a beat due later is recorded at a later look"
    assert not slow.is_set()
