from __future__ import annotations

import asyncio

import pytest

from engine.shared_read import SharedRead


class Source:
    """A value the test changes, read by a read the test lets finish."""

    def __init__(self) -> None:
        self.value = 0
        self.started = 0
        self.release = asyncio.Event()
        self.fail_next = False

    async def read(self) -> int:
        self.started += 1
        seen = self.value  # what the database had when the read began
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database gone")
        return seen


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_callers_arriving_together_share_one_read() -> None:
    source = Source()
    shared = SharedRead(source.read)
    callers = [asyncio.create_task(shared()) for _ in range(100)]
    await settle()
    source.release.set()
    assert await asyncio.gather(*callers) == [0] * 100
    assert shared.reads == 1


async def test_caller_arriving_during_a_read_gets_a_read_begun_after_it_asked() -> None:
    source = Source()
    shared = SharedRead(source.read)
    first = asyncio.create_task(shared())
    await settle()
    assert source.started == 1
    source.value = 1  # committed after the running read began
    later = [asyncio.create_task(shared()) for _ in range(10)]
    await settle()
    assert source.started == 1  # the next read waits for the running one
    source.release.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1] * 10
    assert shared.reads == 2


async def test_failed_read_reaches_its_callers_and_the_next_read_succeeds() -> None:
    source = Source()
    shared = SharedRead(source.read)
    source.fail_next = True
    callers = [asyncio.create_task(shared()) for _ in range(3)]
    await settle()
    source.release.set()
    for caller in callers:
        with pytest.raises(ConnectionError):
            await caller
    assert await shared() == 0


async def test_cancelled_caller_does_not_cancel_the_read_others_wait_for() -> None:
    source = Source()
    shared = SharedRead(source.read)
    leaver, stayer = asyncio.create_task(shared()), asyncio.create_task(shared())
    await settle()
    leaver.cancel()
    await settle()
    source.release.set()
    assert await stayer == 0
    assert leaver.cancelled()
