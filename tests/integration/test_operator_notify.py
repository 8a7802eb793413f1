"""Operator requests reach the owning engine through the database: the CLI's write NOTIFYs the
account's channel, the engine LISTENs and refreshes at once; its poll is the fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.ledger.operator_channel import operator_channel
from engine.operator_listener import APPLICATION_NAME, OperatorListener
from tests.helpers import ROOT, eventually, tradectl
from tests.metrics_http import metrics_server, scrape


@pytest.fixture
def metrics_url() -> Iterator[str]:
    with metrics_server() as url:
        yield url


def _env(database_url: URL, account: str, poll_s: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": account,
        "TRADECTL_VENUE": "paper",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_LEASE_TTL_S": "3",
        "TRADECTL_OPERATOR_POLL_S": poll_s,
    }


async def _listeners(db_engine: AsyncEngine) -> list[int]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
            {"n": APPLICATION_NAME},
        )
        return [int(r[0]) for r in rows]


@pytest.fixture
async def engine_running(
    request: pytest.FixtureRequest,
    database_url: URL,
    db_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[dict[str, str]]:
    account, poll_s = request.param
    env = _env(database_url, account, poll_s)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def listening() -> bool:
        if task.done():
            task.result()
        return bool(await _listeners(db_engine))

    await eventually(listening, timeout=30, message="the engine never listened")
    yield env
    stop.set()
    await asyncio.wait_for(task, timeout=30)


async def _paused_in_engine(metrics_url: str, account: str) -> bool:
    got = (await scrape(metrics_url)).value(
        "tradectl_controls_active", account=account, kind="pause"
    )
    return got == 1


@pytest.mark.parametrize("engine_running", [("notify-1", "3600")], indirect=True)
async def test_a_pause_from_the_cli_reaches_the_engine_by_notify_not_by_its_poll(
    engine_running: dict[str, str], metrics_url: str
) -> None:
    # the poll is an hour away: only the NOTIFY can bring the pause in
    proc = await tradectl(engine_running, "pause", "--reason", "rebalancing")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    await eventually(
        lambda: _paused_in_engine(metrics_url, "notify-1"),
        timeout=10,
        message="the running engine never saw the pause",
    )
    scraped = await scrape(metrics_url)
    assert (
        scraped.value("tradectl_operator_wakeups_total", account="notify-1", via="notify") or 0
    ) >= 1


@pytest.mark.parametrize("engine_running", [("notify-2", "0.5")], indirect=True)
async def test_with_the_listener_killed_a_pause_still_arrives_and_the_listener_comes_back(
    engine_running: dict[str, str], metrics_url: str, db_engine: AsyncEngine
) -> None:
    [pid] = await _listeners(db_engine)
    async with db_engine.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    proc = await tradectl(engine_running, "pause", "--reason", "listener down")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    await eventually(
        lambda: _paused_in_engine(metrics_url, "notify-2"),
        timeout=10,
        message="the pause never reached the engine with its listener killed",
    )
    await eventually(
        lambda: _listeners(db_engine), timeout=10, message="the listener never reconnected"
    )
    assert await _listeners(db_engine) != [pid]


async def test_a_notify_on_the_account_channel_wakes_only_that_accounts_listener(
    database_url: URL, db_engine: AsyncEngine
) -> None:
    mine, other = OperatorListener(database_url, "a-1"), OperatorListener(database_url, "a-2")
    woke_mine, woke_other = mine.subscribe(), other.subscribe()
    tasks = [asyncio.create_task(mine.run()), asyncio.create_task(other.run())]
    try:
        await eventually(lambda: mine.listening and other.listening, timeout=10)
        woke_mine.clear()
        woke_other.clear()
        async with db_engine.begin() as conn:
            await conn.execute(text("SELECT pg_notify(:c, 'x')"), {"c": operator_channel("a-1")})
        await eventually(woke_mine.is_set, timeout=10, message="the account's engine slept on")
        assert not woke_other.is_set()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
