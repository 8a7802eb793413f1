"""``kill -USR1 <pid>``: every asyncio task's stack into the log, for an engine that looks stuck.

An operator (or a test harness) asking "what is it waiting on?" gets each task's name and where
it is suspended, without stopping anything: a pool checkout, a lock wait in a statement, a venue
call that never answers all show as the innermost frames.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("tradectl.tasks")

#: how deep the await chain is followed (the innermost frames say what it waits on)
DEPTH = 40


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """``file:line in function`` from the task's coroutine down to what it awaits now.

    ``Task.get_stack`` stops at the task's own coroutine; this follows ``cr_await`` (and an
    async generator's ``ag_await``) through every nested coroutine."""
    lines: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(DEPTH):
        frame: FrameType | None = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            frame = getattr(obj, "gi_frame", None)
        if frame is None:
            if obj is not None:
                lines.append(f"awaiting {type(obj).__name__}")
            break
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        nxt = (
            getattr(obj, "cr_await", None)
            or getattr(obj, "ag_await", None)
            or getattr(obj, "gi_yieldfrom", None)
        )
        if nxt is None:
            break
        obj = nxt
    return lines


def dump_tasks() -> None:
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    for task in tasks:
        # not ``stack``: structlog's console renderer takes that key for a formatted traceback
        log.warning("engine.task_stack", task_name=task.get_name(), awaiting=await_chain(task))
    log.warning("engine.tasks_dumped", tasks=len(tasks))


def install(loop: asyncio.AbstractEventLoop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
