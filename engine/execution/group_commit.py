"""Group commit: writes that arrive while one is being committed go together in the next.

The first write of a quiet moment is committed at once (no added latency); whatever arrives
while it commits waits and is committed as one batch after it, in one transaction: the cost of
a commit (a WAL flush) is shared by every order that completed meanwhile. Each caller still
gets its own answer only after *its* write is durable, so nothing that depends on it runs
earlier than with one transaction per write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """Batches ``submit(item)`` calls into ``write(items)`` calls, one at a time.

    ``write`` answers per item with its result or the exception that item failed with; an
    exception raised by ``write`` itself (the database away, say) fails the whole batch.
    """

    def __init__(self, write: Write[T, R], *, max_batch: int = 256) -> None:
        self._write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: batches written and items in them (a commit per batch): for the benchmark's counts
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            # Its own task: a caller cancelled while waiting (its send task torn down) must not
            # abandon the batch that carries the other callers' writes.
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        # A caller cancelled while waiting cancels only its future: the write goes on.
        return await future

    async def _flush(self) -> None:
        try:
            # One turn of the loop first: answers delivered in the same tick join this batch.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._write_batch(batch)
        finally:
            self._flusher = None

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._write([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
