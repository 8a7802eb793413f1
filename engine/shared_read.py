"""One database read shared by every caller that asked while the previous one ran.

Hundreds of strategies deciding on the same closed bar each wanted the account's open orders:
a transaction each, all within milliseconds. A :class:`SharedRead` serves them with at most
two reads, and is never staler than a read of one's own: every caller gets the result of a
read that *began after it asked* (a caller arriving while a read runs waits for the next one,
which starts when the running one ends and serves everybody who arrived meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Task[T] | None = None
        #: the read the callers arriving now will share; it starts when ``_running`` ended
        self._next: asyncio.Task[T] | None = None
        self.reads = 0

    async def __call__(self) -> T:
        if self._next is None:
            self._next = asyncio.create_task(self._after(self._running))
            # every waiter may have been cancelled: nobody else would see its failure
            self._next.add_done_callback(_consume)
        # a caller cancelled while waiting must not cancel the read the others wait for
        return await asyncio.shield(self._next)

    async def _after(self, previous: asyncio.Task[T] | None) -> T:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome belongs to its own callers
        # From here on, arrivals wait for the next read: this one may have begun before them.
        self._running, self._next = self._next, None
        self.reads += 1
        try:
            return await self._read()
        finally:
            if self._running is asyncio.current_task():
                self._running = None


def _consume(task: asyncio.Task[T]) -> None:
    if not task.cancelled():
        task.exception()
