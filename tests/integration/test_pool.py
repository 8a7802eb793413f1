"""One engine process, several accounts (engine/pool.py, engine/supervisor.py): each account's
engine is its own, and one that cannot start never stops the others."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import ops_http
from engine.config import load_settings
from engine.ledger.accounts import Accounts
from engine.pool import run_pool
from tests.helpers import eventually
from tests.integration.alert_receiver import Receiver
from tests.integration.pool_helpers import (
    FAST,
    OPERATOR,
    add_accounts,
    credentials_env,
    db_env,
    fills_of,
    scalar,
    simulators,
)
from tests.metrics_http import Scrape

ACCOUNTS = [f"acct-{i}" for i in range(5)]
BAD = "acct-4"


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> list[ops_http.OpsServer]:
    """The ops server the pool starts (on an ephemeral port)."""
    started: list[ops_http.OpsServer] = []
    serving = ops_http.serving

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[ops_http.OpsServer]:
        async with serving(*args, **kwargs) as server:
            started.append(server)
            yield server

    monkeypatch.setattr(ops_http, "serving", recorded)
    return started


async def test_one_engine_trades_five_accounts_and_a_refused_key_stops_only_its_own(
    database_url: URL,
    db_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    servers: list[ops_http.OpsServer],
) -> None:
    receiver = Receiver()
    await receiver.start()
    for name, value in {
        **db_env(database_url),
        **FAST,
        **credentials_env(ACCOUNTS, wrong=frozenset({BAD})),
        "TRADECTL_ACCOUNTS": "auto",
        "TRADECTL_METRICS_PORT": "0",
        "TRADECTL_ALERT_URLS": receiver.url,
    }.items():
        monkeypatch.setenv(name, value)
    async with simulators(ACCOUNTS) as sims:
        await add_accounts(db_engine, sims)
        stop = asyncio.Event()
        pool = asyncio.create_task(run_pool(load_settings(), stop))
        try:
            good = [a for a in ACCOUNTS if a != BAD]

            async def all_filled() -> bool:
                return all([await fills_of(db_engine, a) > 0 for a in good])

            await eventually(all_filled, timeout=60, interval=0.5, message="4 accounts trading")
            # the fifth: its incident and its alert, the engine's halt for it
            incident = await scalar(
                db_engine,
                "SELECT kind FROM incidents WHERE account = :a AND resolved_at IS NULL",
                a=BAD,
            )
            assert incident == "auth_failed"
            # the halt written with the incident raises the account's CRITICAL alert
            alert = await scalar(
                db_engine, "SELECT level FROM alerts WHERE account = :a ORDER BY id LIMIT 1", a=BAD
            )
            assert alert == "CRITICAL"
            # ... delivered although the account's engine (which delivers its alerts) is down

            def delivered() -> bool:
                return any(BAD in str(m) for m in receiver.received)

            await eventually(delivered, timeout=30, message="the fifth's alert delivered")
            assert await fills_of(db_engine, BAD) == 0
            # ... and the other four keep trading after it failed
            before = {a: await fills_of(db_engine, a) for a in good}

            async def all_trade_on() -> bool:
                return all([await fills_of(db_engine, a) > before[a] for a in good])

            await eventually(all_trade_on, timeout=30, interval=0.5, message="4 trade on")
            for a in good:
                assert not await scalar(
                    db_engine,
                    "SELECT count(*) FROM incidents WHERE account = :a AND resolved_at IS NULL",
                    a=a,
                )
            assert not pool.done()
            # one ops server for the process: each account's parts, each account's series
            async with httpx.AsyncClient(base_url=servers[0].url, timeout=5) as client:
                parts = (await client.get("/readyz")).json()["parts"]
                scraped = Scrape((await client.get("/metrics")).text)
            assert parts["pool"] == "ok"
            assert "account:acct-1" in parts
            # between retries it is not run at all; while retried, it is starting
            assert parts.get(f"account:{BAD}", "not running") != "ok"
            for a in good:
                assert scraped.value("tradectl_account_running", account=a) == 1
                assert scraped.value("tradectl_lease_held", account=a) == 1
            assert scraped.value("tradectl_account_running", account=BAD) == 0
            # disabling an account stops its engine gracefully: the lease released, no incident
            await Accounts(db_engine).set_enabled("acct-0", False, OPERATOR)

            async def released() -> bool:
                left = await scalar(
                    db_engine,
                    "SELECT count(*) FROM leases WHERE account = 'acct-0' AND expires_at > now()",
                )
                return not left

            await eventually(released, timeout=30, interval=0.3, message="acct-0 released")
            assert not await scalar(
                db_engine, "SELECT count(*) FROM incidents WHERE account = 'acct-0'"
            )
            assert not pool.done()
        finally:
            stop.set()
            await asyncio.wait_for(pool, timeout=30)
            await receiver.stop()
        # every lease released on the way out
        assert not await scalar(db_engine, "SELECT count(*) FROM leases WHERE expires_at > now()")


async def test_a_listed_engine_runs_only_the_accounts_it_names(
    database_url: URL, db_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = ["list-a", "list-b", "list-c"]
    for name, value in {
        **db_env(database_url),
        **FAST,
        **credentials_env(accounts),
        "TRADECTL_ACCOUNTS": "list-a,list-c",
    }.items():
        monkeypatch.setenv(name, value)
    async with simulators(accounts) as sims:
        await add_accounts(db_engine, sims)
        stop = asyncio.Event()
        pool = asyncio.create_task(run_pool(load_settings(), stop))
        try:

            async def both_filled() -> bool:
                return all([await fills_of(db_engine, a) > 0 for a in ("list-a", "list-c")])

            await eventually(both_filled, timeout=60, interval=0.5, message="a and c trading")
            held = await scalar(db_engine, "SELECT string_agg(account, ',' ORDER BY account) "
                                "FROM leases WHERE expires_at > now()")  # fmt: skip
            assert held == "list-a,list-c"
            assert await fills_of(db_engine, "list-b") == 0
        finally:
            stop.set()
            await asyncio.wait_for(pool, timeout=30)
