"""Operating a running engine from a second process, as an operator would from a second terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.exceptions import ShutdownStuck
from tests.helpers import ROOT, eventually, tradectl


@pytest.fixture
def engine_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "ops",
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_LEASE_TTL_S": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def running_engine(engine_env: dict[str, str], db_engine: AsyncEngine) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def lease_held() -> bool:
        if task.done():
            task.result()  # surface the engine's error instead of timing out
        async with db_engine.connect() as conn:
            holder = await conn.execute(
                text("SELECT holder FROM leases WHERE account = 'ops' AND expires_at > now()")
            )
            return holder.first() is not None

    await eventually(lease_held, timeout=30, message="the engine never took its lease")
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_reconcile_and_cancel_all_from_a_second_process_are_run_by_the_engine(
    running_engine: None, engine_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(engine_env, "reconcile", "--reason", "operator check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "queued for the running engine" in proc.stdout

    proc = await tradectl(engine_env, "cancel-all", "--reason", "going home")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    handled = await scalar(
        db_engine,
        "SELECT count(*) FROM operator_requests WHERE handled_at IS NOT NULL AND account = 'ops'",
    )
    assert handled == 2
    # the journal shows both actions, each with what the engine made of it
    proc = await tradectl(engine_env, "journal", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["action"], e["reason"]) for e in entries] == [
        ("reconcile", "operator check"),
        ("cancel_all", "going home"),
    ]
    assert all(e["request"].startswith("ok") for e in entries), entries


async def test_a_halt_from_a_second_process_stops_new_orders_in_the_running_engine(
    running_engine: None, engine_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(engine_env, "halt", "--reason", "exchange incident")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    halted_at = await scalar(db_engine, "SELECT max(set_at) FROM controls WHERE kind = 'halt'")
    assert halted_at is not None
    # The strategies stop deciding under a halt, so wait on the engine's own heartbeat: once its
    # lease was renewed twice after the halt, the engine has been running past it for ~2 s.
    await eventually(
        lambda: scalar(
            db_engine,
            "SELECT heartbeat_at > (SELECT max(set_at) FROM controls WHERE kind = 'halt')"
            " + interval '2 seconds' FROM leases WHERE account = 'ops'",
        ),
        timeout=20,
        message="the engine's lease heartbeat never moved past the halt",
    )
    after = await scalar(
        db_engine,
        "SELECT count(*) FROM orders o JOIN controls c ON c.kind = 'halt' "
        "WHERE o.created_at > c.set_at",
    )
    assert after == 0
    proc = await tradectl(engine_env, "status")
    assert proc.returncode == 0, proc.stderr
    assert "halt account:ops" in proc.stdout


async def test_with_no_engine_running_a_local_venue_request_waits_for_the_next_start(
    engine_env: dict[str, str], db_engine: AsyncEngine
) -> None:
    proc = await tradectl(engine_env, "reconcile", "--reason", "after the outage")
    assert proc.returncode == 2
    assert "next `tradectl run` handles it" in proc.stderr
    queued = await scalar(
        db_engine, "SELECT count(*) FROM operator_requests WHERE handled_at IS NULL"
    )
    assert queued == 1


async def test_the_engine_on_the_simulator_feeds_both_strategies_and_fills_orders(
    engine_env: dict[str, str], db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default `make run` path: the simulator on loopback, through the Binance adapter
    monkeypatch.setenv("TRADECTL_VENUE", "simulator")
    monkeypatch.setenv(
        "TRADECTL_STRATEGIES_FILE", str(ROOT / "tests/resources/engine/fast_strategies.toml")
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def both_decided_and_something_filled() -> bool:
        if task.done():
            task.result()
        async with db_engine.connect() as conn:
            deciders = (
                await conn.execute(text("SELECT DISTINCT strategy_id FROM decisions"))
            ).scalars()
            filled = (
                await conn.execute(text("SELECT count(*) FROM orders WHERE state = 'FILLED'"))
            ).scalar_one()
        return {"sma-fast", "fv-fast"} <= set(deciders) and filled > 0

    try:
        await eventually(
            both_decided_and_something_filled,
            timeout=60,
            message="both strategies should decide and an order should fill",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    async with db_engine.connect() as conn:
        venues = (await conn.execute(text("SELECT DISTINCT venue FROM orders"))).scalars().all()
    assert venues == ["simulator"]


async def test_a_task_that_ignores_cancellation_cannot_hang_a_graceful_stop(
    engine_env: dict[str, str], db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    open_venue = runtime.open_venue

    @contextlib.asynccontextmanager
    async def with_a_stubborn_task(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def stubborn() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    continue

        async with open_venue(*args, **kwargs) as session:
            session.extra_tasks["stubborn"] = stubborn
            yield session

    monkeypatch.setattr(runtime, "open_venue", with_a_stubborn_task)
    monkeypatch.setattr(runtime, "SHUTDOWN_CANCEL_S", 0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")
    lease = "SELECT count(*) FROM leases WHERE account = 'ops' AND expires_at > now()"

    async def lease_held() -> bool:
        if task.done():
            task.result()
        return await scalar(db_engine, lease) == 1

    await eventually(lease_held, timeout=30, message="the engine never took its lease")
    stop.set()
    try:
        await eventually(task.done, timeout=30, message="the graceful stop hung")
        with pytest.raises(ShutdownStuck, match="stubborn"):
            task.result()
        assert await scalar(db_engine, lease) == 0, "the lease must be released"
    finally:
        release.set()
