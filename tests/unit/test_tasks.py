"""Waiting and stopping that cannot lose a cancellation (engine/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from engine.tasks import stop_tasks, wait_event
from tests.helpers import eventually


async def test_wait_event_says_whether_the_event_fired() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


@pytest.mark.parametrize("yields_between", [0, 1, 2, 3])
async def test_a_cancel_arriving_as_the_loop_is_woken_still_stops_it(yields_between: int) -> None:
    # The resolver's shape: a loop woken often, and a stop arriving just as it is woken. With
    # asyncio.wait_for on Python 3.11 the loop swallowed such a cancel and ran on forever.
    wake = asyncio.Event()

    async def loop() -> None:
        while True:
            await wait_event(wake, 10)
            wake.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    wake.set()
    for _ in range(yields_between):
        await asyncio.sleep(0)
    task.cancel()
    await eventually(task.done, timeout=2, message="the loop ignored its cancellation")
    assert task.cancelled()


async def test_stop_tasks_returns_nothing_when_every_task_ends() -> None:
    tasks = {name: asyncio.create_task(asyncio.sleep(60)) for name in ("a", "b")}
    assert await stop_tasks(tasks, deadline_s=5) == []
    assert all(task.cancelled() for task in tasks.values())


async def test_stop_tasks_names_a_task_that_ignores_cancellation() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    async def failing() -> None:
        raise RuntimeError("boom")

    tasks = {
        "stubborn": asyncio.create_task(stubborn()),
        "polite": asyncio.create_task(asyncio.sleep(60)),
        "failed": asyncio.create_task(failing()),
    }
    await asyncio.sleep(0)
    assert await stop_tasks(tasks, deadline_s=0.2) == ["stubborn"]
    assert tasks["polite"].cancelled()
    release.set()
    await tasks["stubborn"]


@pytest.mark.parametrize("deadline_s", [0.0, 1.0])
async def test_stop_tasks_on_already_finished_tasks_returns_at_once(deadline_s: float) -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    assert await stop_tasks({"done": task}, deadline_s=deadline_s) == []
