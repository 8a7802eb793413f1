"""Waiting and stopping that cannot lose a cancellation.

On Python 3.11, ``asyncio.wait_for(event.wait(), timeout)`` returns the inner result and drops
the caller's cancellation when the event fires in the same loop iteration as the cancel
(CPython gh-86296, fixed in 3.12). A loop built on it, woken often, can then outlive every
``task.cancel()`` and hang a graceful stop. :func:`wait_event` uses ``asyncio.timeout``, which
converts only its own cancellation into ``TimeoutError`` and lets every other one through.

:func:`stop_tasks` cancels tasks and waits for them with a deadline, so a task that still does
not end is named instead of hanging the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import structlog

T = TypeVar("T")


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True when it was set.

    A cancellation of the caller is always raised, even when the event fired at the same time.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def stop_tasks(tasks: Mapping[str, asyncio.Task[None]], *, deadline_s: float) -> list[str]:
    """Cancel ``tasks`` and wait up to ``deadline_s`` for them to end.

    Returns the names of the tasks still running at the deadline (empty when all ended). Their
    exceptions, if any, were logged by whoever supervised them; here an ending is all that counts.
    """
    pending = [task for task in tasks.values() if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=deadline_s)
    for task in tasks.values():
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    return [name for name, task in tasks.items() if not task.done()]


def run_main(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (Linux, macOS): the event loop's own
    overhead per order is a fifth lower there. Plain asyncio otherwise; behaviour is the same."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def named(name: str, fn: Callable[[], Awaitable[None]]) -> None:
    structlog.contextvars.bind_contextvars(task=name)
    await fn()
