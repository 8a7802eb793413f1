"""Issue 13, settlement in the ledger: a Kalshi market that closes and settles is recorded once
(whether the lifecycle stream or the settlements list shows it first), its resting orders end
CANCELED by the venue's word, positions close at the payout, and the balance check agrees.

Real parts throughout: the Kalshi simulator over its sockets, the Kalshi adapter, a real
Postgres, and for the end-to-end tests the whole engine (``runtime.run``) as `make run` starts
it on ``TRADECTL_VENUE=kalshi_simulator``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

import engine.venues.kalshi_simulator as kalshi_simulator
from engine import runtime
from engine.config import load_settings
from engine.domain.intents import Buy, DecisionKey
from engine.domain.positions import PositionFill, position_from_fills, settle
from engine.domain.types import Asset, OrderState, Side, Symbol, TimeInForce, utc_now
from engine.reconcile import Reconciler
from engine.runtime import open_venue
from engine.settlement import Settler
from engine.venues.base import MarketLifecycle, SettlesMarkets
from engine.venues.kalshi_simulator import KalshiSimConfig, KalshiSimHandle, run_kalshi_simulator
from tests.contract.test_kalshi_simulator_contract import MARKET
from tests.helpers import ROOT, eventually
from tests.integration.test_kalshi_execution import PREFIX, STRATEGY, buy, start_engine
from tests.metrics_http import Scrape, metrics_server, scrape

RECONCILE_S = 1.0
SETTLE_S = 1.0


async def rows(db: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(text(sql), params)).mappings())


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


# -- the settler on the adapter and the simulator --------------------------------------------------


async def test_a_settlement_seen_on_the_stream_and_in_the_list_is_one_row(
    db_engine: AsyncEngine,
) -> None:
    async with run_kalshi_simulator(KalshiSimConfig(seed=11)) as sim:
        engine = await start_engine(db_engine, sim)
        settler = Settler(ledger=engine.ledger, venue=engine.venue, execution=engine.execution)
        engine.execution.symbols.add(MARKET)
        seen: list[MarketLifecycle] = []

        async def follow() -> None:
            async for event in engine.venue.lifecycle_stream():
                if isinstance(event, MarketLifecycle):
                    await settler.on_lifecycle(event)
                    seen.append(event)

        task = asyncio.create_task(follow())
        try:
            await eventually(
                lambda: any("market_lifecycle_v2" in s.sids for s in sim.state.subscribers),
                message="the lifecycle stream never subscribed",
            )
            sim.state.settle_market(MARKET, "yes")
            await eventually(lambda: [e.event for e in seen] == ["determined", "settled"])
            recorded = await engine.ledger.settlements.read()
            assert list(recorded) == [MARKET]
            assert (recorded[MARKET].result, recorded[MARKET].payout) == ("yes", Decimal(1))

            assert await settler.sync() == []  # the list shows the same settlement: no new row
            assert await settler.sync() == []
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await engine.venue.close()
        assert await scalar(db_engine, "SELECT count(*) FROM settlements") == 1
        assert await scalar(db_engine, "SELECT count(*) FROM incidents") == 0


async def test_a_resting_order_on_a_settled_market_ends_canceled_by_the_venues_word(
    db_engine: AsyncEngine,
) -> None:
    async with run_kalshi_simulator(KalshiSimConfig(seed=12)) as sim:
        engine = await start_engine(db_engine, sim)
        settler = Settler(ledger=engine.ledger, venue=engine.venue, execution=engine.execution)
        intent = Buy(
            key=DecisionKey(strategy_id=STRATEGY, symbol=MARKET, interval_key="r", side=Side.BUY),
            reason="rests below the touch",
            md_ts=utc_now(),
            quantity=Decimal(4),
            limit_price=Decimal("0.30"),
            time_in_force=TimeInForce.GTC,
        )
        await engine.execution.process([intent])
        [order] = await engine.ledger.orders.non_terminal()
        assert order.state is OrderState.OPEN

        # the market closes and settles; no stream runs here, so only the lookup can tell
        sim.state.settle_market(MARKET, "no")
        assert await settler.sync() == [MARKET]

        closed = await engine.ledger.orders.get(order.client_order_id)
        assert closed is not None
        assert closed.state is OrderState.CANCELED
        events = await rows(
            db_engine,
            "SELECT cause FROM order_events WHERE client_order_id = :coid ORDER BY id",
            coid=order.client_order_id,
        )
        assert events, "the cancel must be an event of the order"
        recorded = await engine.ledger.settlements.read()
        assert (recorded[MARKET].result, recorded[MARKET].payout) == ("no", Decimal(0))
        await engine.venue.close()


async def test_a_settlement_the_venue_reports_differently_opens_an_incident_and_is_kept(
    db_engine: AsyncEngine,
) -> None:
    async with run_kalshi_simulator(KalshiSimConfig(seed=14)) as sim:
        engine = await start_engine(db_engine, sim)
        settler = Settler(ledger=engine.ledger, venue=engine.venue, execution=engine.execution)
        # recorded as YES (say, from a lifecycle message), and the venue lists NO
        await engine.ledger.settlements.record(
            MARKET, result="yes", payout=Decimal(1), settled_at=utc_now()
        )
        sim.state.settle_market(MARKET, "no")
        assert await settler.sync() == []
        assert await settler.sync() == []  # one incident, not one per pass
        await engine.venue.close()
    [incident] = await engine.ledger.incidents.read()
    assert incident.kind == "settlement_mismatch"
    assert (incident.details["venue_result"], incident.details["ledger_result"]) == ("no", "yes")
    [kept] = await rows(db_engine, "SELECT result FROM settlements")
    assert kept["result"] == "yes"


async def test_a_market_settling_during_the_startup_check_is_recorded_not_confirmed_as_drift(
    db_engine: AsyncEngine,
) -> None:
    """The startup check looks again at a suspected drift before strategies start; a market
    that settled after the pass listed settlements moves its balances as a drift would, so
    each look records settlements first (chaos kalshi seed 1: a false drift of the payout)."""
    async with run_kalshi_simulator(KalshiSimConfig(seed=15)) as sim:
        engine = await start_engine(db_engine, sim)
        await engine.execution.process([buy("0.47")])  # 3 contracts, filled in the answer
        await engine.execution.sync_fills([MARKET])

        class SettledJustAfterTheListing(Settler):
            armed = False

            async def sync(self) -> list[Symbol]:
                recorded = await super().sync()
                if self.armed and not sim.state.settlements:
                    sim.state.settle_market(MARKET, "yes")
                return recorded

        settler = SettledJustAfterTheListing(
            ledger=engine.ledger, venue=engine.venue, execution=engine.execution
        )
        reconciler = Reconciler(
            ledger=engine.ledger,
            execution=engine.execution,
            prefix=PREFIX,
            balance_tolerance="0",
            settle_s=0.2,
            settler=settler,
        )

        assert (await reconciler.reconcile()).balances_checked  # the baseline, 3 contracts
        settler.armed = True

        report = await reconciler.reconcile(startup=True)

        assert report.balance_drifts == []
        assert report.settlements_recorded == [MARKET]
        await engine.venue.close()
    assert await scalar(db_engine, "SELECT count(*) FROM incidents") == 0


# -- the whole engine ------------------------------------------------------------------------------


@pytest.fixture
def engine_env(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "TRADECTL_ACCOUNT": "settle",
        "TRADECTL_VENUE": "kalshi_simulator",
        "TRADECTL_KALSHI_READ_LAG_S": "0",
        "TRADECTL_STRATEGIES_FILE": str(ROOT / "strategies" / "kalshi.toml"),
        "TRADECTL_STATUS_INTERVAL_S": "3600",
        "TRADECTL_BALANCE_SETTLE_S": str(SETTLE_S),
        "TRADECTL_RECONCILE_INTERVAL_S": str(RECONCILE_S),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KalshiSimHandle]:
    """One Kalshi simulator that outlives the engine: the engine's session opens it instead of
    starting its own, so a restarted engine meets the same venue."""
    async with run_kalshi_simulator(KalshiSimConfig(seed=13)) as handle:

        @contextlib.asynccontextmanager
        async def shared(*args: Any, **kwargs: Any) -> AsyncIterator[KalshiSimHandle]:
            yield handle

        monkeypatch.setattr(kalshi_simulator, "run_kalshi_simulator", shared)
        yield handle


@contextlib.asynccontextmanager
async def running(db: AsyncEngine) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(load_settings(), stop), name="engine-under-test")
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def alive(task: asyncio.Task[None]) -> None:
    if task.done():
        task.result()


async def wait_for_fills(db: AsyncEngine, task: asyncio.Task[None]) -> None:
    async def traded() -> bool:
        alive(task)
        return bool(await scalar(db, "SELECT count(*) FROM fills"))

    await eventually(traded, timeout=60, message="the engine never traded")


async def wait_for_agreeing_check_after_settlement(
    db: AsyncEngine, task: asyncio.Task[None]
) -> None:
    """A balance check after the settlement agreed: the market's contracts have a baseline of
    zero taken after the settlement was recorded (only agreeing totals become baselines)."""

    async def agreed() -> bool:
        alive(task)
        return bool(
            await scalar(
                db,
                """SELECT count(*) FROM balance_baselines b JOIN settlements s
                   ON s.account = b.account AND s.symbol = b.asset
                   WHERE b.total = 0 AND b.taken_at > s.recorded_at
                     AND EXISTS (SELECT 1 FROM balance_baselines u WHERE u.asset = 'USD'
                                 AND u.taken_at > s.recorded_at)""",
            )
        )

    await eventually(agreed, timeout=60, message="no balance check agreed after the settlement")


async def assert_settled_in_the_ledger(
    db: AsyncEngine, sim: KalshiSimHandle, result: str
) -> Decimal:
    """Asserts the ledger's view of the settled market; returns the realized P&L."""
    payout = Decimal(1) if result == "yes" else Decimal(0)
    [row] = await rows(db, "SELECT symbol, result, payout FROM settlements")
    assert (row["symbol"], row["result"], row["payout"]) == (MARKET, result, payout)
    # the P&L closes the position at the payout, as the domain's settle() does
    [pnl] = await rows(
        db,
        "SELECT position, realized, unrealized, mark_source FROM pnl WHERE symbol = :s",
        s=MARKET,
    )
    fills = await rows(
        db, "SELECT side, qty, price, fee, fee_asset FROM fills ORDER BY venue_ts, id"
    )
    position = position_from_fills(
        (
            PositionFill(
                side=Side(f["side"]),
                qty=f["qty"],
                price=f["price"],
                fee=f["fee"],
                fee_asset=None if f["fee_asset"] is None else Asset(f["fee_asset"]),
            )
            for f in fills
        ),
        base_asset=Asset(MARKET),
        quote_asset=Asset("USD"),
    )
    assert position.quantity > 0  # it held contracts when the market settled
    settled = settle(position, payout)
    assert (pnl["position"], pnl["unrealized"], pnl["mark_source"]) == (0, 0, "settlement")
    assert pnl["realized"] == settled.realized_pnl
    realized: Decimal = pnl["realized"]
    # nothing of ours rests on the closed market, and no check saw a drift
    assert (
        await scalar(db, "SELECT count(*) FROM orders WHERE state IN ('OPEN', 'PARTIALLY_FILLED')")
        == 0
    )
    assert await scalar(db, "SELECT count(*) FROM incidents WHERE kind = 'balance_drift'") == 0
    # strategies stop deciding on it: the symbol is paused, saying why
    paused = await rows(db, "SELECT scope, set_by, reason FROM controls WHERE active")
    assert [(c["scope"], c["set_by"]) for c in paused] == [("symbol", "settlement")]
    assert f"market {MARKET} settled {result}" in paused[0]["reason"]
    # the view people read (`tradectl status`) agrees too: contracts gone, payout in cash
    balances = await rows(
        db,
        "SELECT asset, total, difference FROM current_balances WHERE asset IN ('USD', :m)",
        m=MARKET,
    )
    venue_usd = sim.state.core.balances["USD"]
    assert {b["asset"]: (b["total"], b["difference"]) for b in balances} == {
        "USD": (venue_usd.free + venue_usd.locked, 0),
        MARKET: (0, 0),
    }
    return realized


async def test_a_market_settling_mid_run_is_realized_at_its_payout_without_drift(
    engine_env: None, db_engine: AsyncEngine, sim: KalshiSimHandle
) -> None:
    with metrics_server() as url:
        async with running(db_engine) as task:
            await wait_for_fills(db_engine, task)
            sim.state.settle_market(MARKET, "yes")

            async def recorded() -> bool:
                alive(task)
                return bool(await scalar(db_engine, "SELECT count(*) FROM settlements"))

            await eventually(recorded, timeout=30, message="the settlement was never recorded")
            await wait_for_agreeing_check_after_settlement(db_engine, task)
            realized = await assert_settled_in_the_ledger(db_engine, sim, "yes")

            async def gauges_realized_it() -> Scrape | None:
                alive(task)
                m = await scrape(url)
                shown = m.value("tradectl_pnl_realized", account="settle", symbol=MARKET)
                return m if shown == float(realized) else None

            m = await eventually(gauges_realized_it, timeout=30, message="P&L gauge not settled")
            assert m is not None
            counted = [
                m.value("tradectl_settlements_recorded_total", account="settle", source=source)
                for source in ("stream", "rest")
            ]
            assert sum(c or 0 for c in counted) == 1


async def test_a_market_that_settles_while_the_engine_is_down_is_settled_at_the_next_start(
    engine_env: None, db_engine: AsyncEngine, sim: KalshiSimHandle
) -> None:
    async with running(db_engine) as task:
        await wait_for_fills(db_engine, task)
    assert await scalar(db_engine, "SELECT count(*) FROM settlements") == 0

    sim.state.settle_market(MARKET, "no")  # while nothing of tradectl runs

    async with running(db_engine) as task:
        await wait_for_agreeing_check_after_settlement(db_engine, task)
        await assert_settled_in_the_ledger(db_engine, sim, "no")
    assert await scalar(db_engine, "SELECT count(*) FROM settlements") == 1


async def test_the_demo_simulator_settles_its_market_after_the_configured_time() -> None:
    settings = load_settings(
        venue="kalshi_simulator", seed=3, kalshi_read_lag_s=0, kalshi_settle_after_s=0.5
    )
    async with open_venue(settings, (MARKET,), utc_now) as session:
        assert session.driver is not None
        driver = asyncio.create_task(session.driver())
        try:
            venue = session.venue
            assert isinstance(venue, SettlesMarkets)
            listed = await eventually(
                lambda: venue.settlements_since(None),
                timeout=20,
                message="the simulator never settled its market",
            )
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
    [settled] = listed
    assert settled.symbol == MARKET
    assert (settled.result, settled.payout) in (("yes", Decimal(1)), ("no", Decimal(0)))
