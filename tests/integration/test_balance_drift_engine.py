"""A real drift still pauses, end to end: the engine on the built-in simulator, and a deposit or
a trade made by hand outside tradectl moving the account's holdings on the venue.

A deposit shows as a balance drift. A trade made by hand is recorded like every fill (the venue
reports it on the account's stream), so balances agree; it is reported as an external trade."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import engine.venues.simulator as simulator
from engine import runtime, venue_session
from engine.config import load_settings
from engine.domain.types import ClientOrderId, OrderType, Side, Symbol, TimeInForce
from engine.venues.base import OrderRequest
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.simulator import SimulatorHandle
from tests.helpers import ROOT, eventually

SETTLE_S = 1.0
RECONCILE_S = 1.0
#: the drift must be reported within the settle window and a reconcile interval or two
REPORT_WITHIN_S = 30.0


@pytest.fixture
def engine_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "drift",
        "TRADECTL_VENUE": "simulator",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "example.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_BALANCE_SETTLE_S": str(SETTLE_S),
        "TRADECTL_RECONCILE_INTERVAL_S": str(RECONCILE_S),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> list[SimulatorHandle]:
    """The handle of the simulator the engine starts (its admin endpoints inject the drift)."""
    handles: list[SimulatorHandle] = []
    start = simulator.run_simulator

    @contextlib.asynccontextmanager
    async def recorded(*args: Any, **kwargs: Any) -> AsyncIterator[SimulatorHandle]:
        async with start(*args, **kwargs) as handle:
            handles.append(handle)
            yield handle

    monkeypatch.setattr(simulator, "run_simulator", recorded)
    return handles


@contextlib.asynccontextmanager
async def running(db_engine: AsyncEngine) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")

    async def traded() -> bool:
        if task.done():
            task.result()
        return bool(await scalar(db_engine, "SELECT count(*) FROM fills"))

    try:
        await eventually(traded, timeout=60, message="the engine never traded")
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


def reported(db_engine: AsyncEngine, kind: str, detail: str) -> Callable[[], Awaitable[bool]]:
    """An open incident of ``kind`` whose details mention ``detail``, and a reconciler pause."""

    async def open_and_paused() -> bool:
        incidents = await scalar(
            db_engine,
            f"SELECT count(*) FROM incidents WHERE kind = '{kind}' AND resolved_at IS NULL "
            f"AND details::text LIKE '%\"{detail}\"%'",
        )
        pauses = await scalar(
            db_engine,
            "SELECT count(*) FROM controls "
            "WHERE active AND kind = 'pause' AND set_by = 'reconciler'",
        )
        return bool(incidents and pauses)

    return open_and_paused


async def test_a_deposit_on_the_venue_opens_a_drift_incident_and_pauses(
    engine_env: dict[str, str], db_engine: AsyncEngine, sims: list[SimulatorHandle]
) -> None:
    async with running(db_engine):
        assert await scalar(db_engine, "SELECT count(*) FROM incidents") == 0
        [sim] = sims
        async with httpx.AsyncClient(base_url=sim.admin_url, timeout=10) as admin:
            response = await admin.post("/deposit", json={"asset": "USDT", "amount": "250"})
            response.raise_for_status()
        await eventually(
            reported(db_engine, "balance_drift", "USDT"),
            timeout=REPORT_WITHIN_S,
            message="the deposit was never reported",
        )
        paused = await scalar(
            db_engine,
            "SELECT string_agg(target, ',') FROM controls WHERE active AND kind = 'pause'",
        )
        # whoever trades USDT (the account, before sma-btc's first fill); never fv-pres (USD)
        assert paused in ("sma-btc", "drift"), paused


async def test_a_trade_made_by_hand_on_the_venue_opens_an_incident_and_pauses(
    engine_env: dict[str, str],
    db_engine: AsyncEngine,
    sims: list[SimulatorHandle],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The engine trades PRES-YES only; the venue also lists BTCUSDT, where someone buys by hand.
    example = (ROOT / "strategies" / "example.toml").read_text()
    only_pres = tmp_path / "pres.toml"
    only_pres.write_text(example[example.index('[[strategy]]\nid = "fv-pres"') :])
    monkeypatch.setenv("TRADECTL_STRATEGIES_FILE", str(only_pres))
    config = venue_session.simulator_config
    monkeypatch.setattr(
        venue_session,
        "simulator_config",
        lambda symbols, *, seed: config((Symbol("BTCUSDT"), *symbols), seed=seed),
    )
    async with running(db_engine):
        [sim] = sims
        by_hand = BinanceVenue(
            BinanceConfig(
                api_key=sim.state.config.api_key,
                api_secret=SecretStr(sim.state.config.api_secret),
                rest_url=sim.rest_url,
                ws_api_url=sim.ws_api_url,
                stream_url=sim.stream_url,
            )
        )
        try:
            await by_hand.submit(
                OrderRequest(
                    client_order_id=ClientOrderId("web-manual-1"),
                    symbol=Symbol("BTCUSDT"),
                    side=Side.BUY,
                    type=OrderType.MARKET,
                    quantity=Decimal("0.01"),
                    time_in_force=TimeInForce.GTC,
                )
            )
        finally:
            await by_hand.close()
        await eventually(
            reported(db_engine, "external_trade", "BTCUSDT"),
            timeout=REPORT_WITHIN_S,
            message="the manual trade was never reported",
        )
