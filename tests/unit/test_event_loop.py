"""`tradectl run` runs on uvloop where it is installed, with the same behaviour."""

from __future__ import annotations

import asyncio

import pytest

from engine.tasks import run_main


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_the_engine_loop_is_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    assert run_main(_loop_module()).startswith("uvloop")


def test_the_engine_loop_returns_the_result_and_raises_the_error() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    assert run_main(_loop_module())
    with pytest.raises(ValueError, match="boom"):
        run_main(fails())
