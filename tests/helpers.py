"""Small test helpers shared by every suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    condition: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition never became true",
) -> T:
    """Poll ``condition`` (sync or async) until it returns a truthy value; return that value.

    Tests wait with this, never with bare sleeps: it returns as soon as the condition holds and
    fails with ``message`` (and the last value seen) when the timeout runs out.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)
