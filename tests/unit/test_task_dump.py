from __future__ import annotations

import asyncio
import os
import signal

import structlog

from engine import task_dump
from tests.helpers import eventually


async def _waits_on(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _waits_on(event)


async def test_sigusr1_logs_each_task_with_the_innermost_call_it_waits_in() -> None:
    event = asyncio.Event()
    stuck = asyncio.create_task(_outer(event), name="stuck-one")
    await asyncio.sleep(0)  # let it reach its wait
    task_dump.install(asyncio.get_running_loop())
    try:
        with structlog.testing.capture_logs() as logs:
            os.kill(os.getpid(), signal.SIGUSR1)
            await eventually(lambda: any(e["event"] == "engine.tasks_dumped" for e in logs))
        [line] = [e for e in logs if e.get("task_name") == "stuck-one"]
        frames = " / ".join(line["awaiting"])
        assert "in _outer" in frames
        assert "in _waits_on" in frames
        assert frames.index("in _outer") < frames.index("in _waits_on")
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        event.set()
        await stuck
