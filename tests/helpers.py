"""Small test helpers shared by every suite."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]

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


async def tradectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``tradectl ARGS`` as a second process would (an operator's second terminal)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "engine", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
