"""The account's concentration and portfolio limits in a running engine, configured in the
strategies TOML, through the real gate against the built-in Binance-protocol simulator over real
sockets: each fires and its stored verdict keeps the values it used. And a restart of the engine
in the middle of a losing day keeps the daily loss and the drawdown it measured."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import URL

from engine.config import load_settings
from engine.crashpoints import CrashPoints
from engine.database import open_database
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, DecisionKey
from engine.domain.types import (
    OrderState,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    utc_now,
)
from engine.runtime import Engine
from engine.strategy_config import parse_trading_config
from engine.venue_session import VenueSession
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.binance.stream import StreamSettings
from engine.venues.metrics import VenueMetrics
from engine.venues.simulator import SimulatorConfig, SimulatorState, run_simulator
from tests.helpers import eventually

BTC, ETH = Symbol("BTCUSDT"), Symbol("ETHUSDT")
A, B = StrategyId("a"), StrategyId("b")
#: the touch each test starts from: mids 30000 and 2000 (the market moves only when told)
TOUCH = {BTC: (Decimal("29999.5"), Decimal("30000.5")), ETH: (Decimal("1999.5"), Decimal("2000.5"))}
L1 = {"categories": {BTC: "l1", ETH: "l1"}}


@dataclasses.dataclass
class Running:
    engine: Engine
    state: SimulatorState
    account: str


def _trading(
    account_limits: dict[str, Any],
    instruments: dict[str, Any] | None,
    on_start: str,
    strategies: list[dict[str, Any]],
) -> Any:
    # fair_value on coins always holds (their quotes are outside (0, 1)): the engine subscribes
    # both symbols and the test's own intents are the only orders
    raw: dict[str, Any] = {
        "strategy": [
            {
                "id": "holder",
                "kind": "fair_value",
                "symbols": [BTC, ETH],
                "on_start": on_start,
                "params": {"fair": "0.5", "edge": "0.01", "qty": "1", "max_inventory": "1"},
            },
            *strategies,
        ],
        "account": {"limits": account_limits},
    }
    if instruments is not None:
        raw["instruments"] = instruments
    return parse_trading_config(raw, source=Path("<test>"))


@contextlib.asynccontextmanager
async def running(
    database_url: URL,
    account: str,
    account_limits: dict[str, Any],
    *,
    instruments: dict[str, Any] | None = None,
    state: SimulatorState | None = None,
    clock: Callable[[], datetime] = utc_now,
    crash: CrashPoints | None = None,
    on_start: str = "keep",
    strategies: list[dict[str, Any]] | None = None,
    **overrides: object,
) -> AsyncIterator[Running]:
    settings = load_settings(
        database_url=database_url.render_as_string(hide_password=False),
        account=account,
        venue="simulator",
        status_interval_s=3600,
        resolve_interval_s=0.2,
        consistency_window_s=0.2,
        **overrides,
    )
    trading = _trading(account_limits, instruments, on_start, strategies or [])
    config = SimulatorConfig(seed=11, market_interval=None)
    async with open_database(settings) as db, run_simulator(config, state=state) as sim:
        metrics = VenueMetrics(account=account, venue="simulator")
        venue = BinanceVenue(
            BinanceConfig(
                api_key=config.api_key,
                api_secret=SecretStr(config.api_secret),
                rest_url=sim.rest_url,
                ws_api_url=sim.ws_api_url,
                stream_url=sim.stream_url,
                venue_name=VenueName("simulator"),
                stream=StreamSettings(backoff_initial_s=0.1, backoff_max_s=0.5),
            ),
            metrics=metrics,
        )
        session = VenueSession(venue=venue, metrics=metrics, credential="the simulator's key")
        engine = Engine(
            settings,
            db,
            session,
            trading.strategies,
            account_limits=trading.account_limits,
            protection=trading.protection.resolve(settings),
            clock=clock,
            crash=crash,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        try:
            await eventually(lambda: engine.ready, timeout=30, message="engine never started")
            run = Running(engine, sim.state, account)
            for symbol, (bid, ask) in TOUCH.items():
                if state is not None:  # a restart: the venue's touch where the last run left it
                    touch = state.touch(symbol)
                    bid, ask = Decimal(touch["bid"]), Decimal(touch["ask"])
                await move(run, symbol, bid, ask)
            yield run
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
            await venue.close()


async def move(run: Running, symbol: Symbol, bid: Decimal, ask: Decimal) -> None:
    """Set the venue's touch and wait until the engine's market view has it (set again while
    waiting: the market stream may not have subscribed yet)."""

    def arrived() -> bool:
        quote = run.engine.conflator.quote(symbol)
        if quote is not None and (quote.bid, quote.ask) == (bid, ask):
            return True
        run.state.set_quote(symbol, bid=bid, ask=ask, size=Decimal(50))
        return False

    await eventually(arrived, message=f"the {symbol} quote {bid}/{ask} never arrived")


def buy(
    strategy: StrategyId,
    symbol: Symbol,
    qty: str,
    price: str,
    interval: str,
    md_ts: datetime | None = None,
) -> Buy:
    return Buy(
        key=DecisionKey(strategy_id=strategy, symbol=symbol, interval_key=interval, side=Side.BUY),
        reason="test",
        md_ts=md_ts or utc_now(),
        quantity=Decimal(qty),
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


async def decide(run: Running, intent: Buy) -> tuple[str, dict[str, dict[str, str]]]:
    """Submit ``intent`` through the engine; its stored outcome and verdicts by check."""
    await run.engine.execution.submit_intent(intent)

    async def stored() -> tuple[str, dict[str, dict[str, str]]] | None:
        async with run.engine.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT outcome, verdicts FROM decisions "
                        "WHERE account = :a AND strategy_id = :s AND interval_key = :i"
                    ),
                    {"a": run.account, "s": intent.strategy_id, "i": intent.key.interval_key},
                )
            ).first()
        if row is None:
            return None
        return row[0], {v["check"]: dict(v) for v in row[1]}

    return await eventually(stored, message="the decision was never stored")


async def resting(run: Running, intent: Buy) -> None:
    """``intent`` reserved and acknowledged: it rests on the venue and counts as exposure."""
    outcome, _ = await decide(run, intent)
    assert outcome == "reserved"

    async def acked() -> bool:
        open_orders = await run.engine.ledger.orders.open(intent.strategy_id)
        return any(o.state is OrderState.OPEN for o in open_orders)

    await eventually(acked, message="the resting order was never acknowledged")


async def test_a_category_gross_limit_counts_every_strategy_through_the_simulator(
    database_url: URL,
) -> None:
    limits = {"max_category_gross": {"l1": "5000"}}
    async with running(database_url, "cat-gross", limits, instruments=L1) as run:
        # A: 1 ETH resting far below the touch, valued at its mid: 2000
        await resting(run, buy(A, ETH, "1", "1000", "e1"))
        # B: 0.1 BTC at 20000 is 2000 more: 4000 fits; 0.2 (4000 more: 6000) does not
        fits, _ = await decide(run, buy(B, BTC, "0.1", "20000", "b1"))
        assert fits == "reserved"
        outcome, verdicts = await decide(run, buy(B, BTC, "0.1", "20000", "b2"))
        assert outcome == "denied"
        gross = verdicts["max_category_gross"]
        assert (gross["result"], gross["limit"], gross["observed"]) == ("reject", "5000", "6000")
        assert "category l1" in gross["message"]


async def test_a_category_net_limit_counts_the_side_the_order_adds_to_through_the_simulator(
    database_url: URL,
) -> None:
    limits = {"max_category_net": {"l1": "2500"}}
    async with running(database_url, "cat-net", limits, instruments=L1) as run:
        await resting(run, buy(A, ETH, "1", "1000", "e1"))  # long side: 2000
        outcome, verdicts = await decide(run, buy(B, BTC, "0.05", "20000", "b1"))
        assert outcome == "denied"
        net = verdicts["max_category_net"]
        assert (net["result"], net["limit"], net["observed"]) == ("reject", "2500", "3000")
        assert "category l1" in net["message"]


async def test_account_symbol_position_and_notional_limits_through_the_simulator(
    database_url: URL,
) -> None:
    limits = {
        "max_symbol_position": {BTC: "0.15"},
        "max_symbol_notional": {ETH: "3000"},
        "resize": ["max_symbol_position"],
    }
    async with running(database_url, "symbol-limits", limits) as run:
        await resting(run, buy(A, BTC, "0.1", "20000", "b1"))
        # every strategy together: B's 0.1 more would make 0.2 of 0.15; resized to 0.05
        outcome, verdicts = await decide(run, buy(B, BTC, "0.1", "20000", "b2"))
        assert outcome == "reserved"
        qty = verdicts["max_symbol_position"]
        assert (qty["result"], qty["limit"], qty["observed"]) == ("resize", "0.15", "0.2")
        [order] = await run.engine.ledger.orders.open(B)
        assert order.requested_qty == Decimal("0.05")
        # 2 ETH at 1600 is 3200 of 3000
        outcome, verdicts = await decide(run, buy(A, ETH, "2", "1600", "e1"))
        assert outcome == "denied"
        notional = verdicts["max_symbol_notional"]
        assert (notional["result"], notional["limit"], notional["observed"]) == (
            "reject",
            "3000",
            "3200",
        )


async def test_a_position_limit_as_a_share_of_equity_uses_the_venues_cash_through_the_simulator(
    database_url: URL,
) -> None:
    limits = {"max_position_equity_pct": "1", "equity_asset": "USDT"}
    async with running(database_url, "equity-pct", limits) as run:
        # the startup reconciliation recorded the venue's balances: 100000 USDT
        await run.engine.gate._refresh_slow(force=True)
        outcome, verdicts = await decide(run, buy(A, BTC, "0.05", "25000", "b1"))  # 1250
        assert outcome == "denied"
        share = verdicts["max_position_equity_pct"]
        assert (share["result"], share["limit"], share["observed"]) == ("reject", "1", "1.25")
        assert "notional 1250 of equity 100000" in share["message"]
        fits, verdicts = await decide(run, buy(A, BTC, "0.03", "25000", "b2"))  # 750
        assert fits == "reserved"
        assert verdicts["max_position_equity_pct"]["observed"] == "0.75"


async def test_an_engine_restart_in_the_middle_of_a_losing_day_keeps_daily_loss_and_drawdown(
    database_url: URL,
) -> None:
    # both crossed by the fall below (about 53 lost today, 150 from the peak): the new process
    # measures the same figures and its order checks reject on them
    limits = {"max_daily_loss": "50", "max_drawdown": "100"}
    async with running(database_url, "losing-day", limits) as run:
        engine = run.engine
        # 0.1 BTC bought at the ask (taker), marked up to a peak, then down below the entry
        outcome, _ = await decide(run, buy(A, BTC, "0.1", "30000.5", "in"))
        assert outcome == "reserved"

        coid = client_order_id("tctl", buy(A, BTC, "0.1", "30000.5", "in").key)

        async def filled() -> bool:
            order = await engine.ledger.orders.get(coid)
            return order is not None and order.state is OrderState.FILLED

        await eventually(filled, message="the buy should fill at the touch")
        for bid, ask in (("30999.5", "31000.5"), ("29499.5", "29500.5")):
            await move(run, BTC, Decimal(bid), Decimal(ask))
            # the gate re-reads its P&L inputs at most once a second; this one now
            engine.portfolio.mark_dirty()
            await engine.gate._refresh_slow(force=True)
        before = engine.gate.loss_figures()
        assert before is not None
        today, drawdown = before
        assert today < 0
        assert drawdown > -today  # the peak was above the day's start: two different figures
        state = run.state

    # a new engine process over the same ledger, the venue where it was
    async with running(database_url, "losing-day", limits, state=state) as run:
        engine = run.engine
        engine.portfolio.mark_dirty()
        await engine.gate._refresh_slow(force=True)
        assert engine.gate.loss_figures() == before
        outcome, verdicts = await decide(run, buy(A, BTC, "0.001", "20000", "after"))
        assert outcome == "denied"
        daily, peak = verdicts["daily_loss"], verdicts["drawdown"]
        assert (daily["result"], daily["limit"]) == ("reject", "50")
        assert Decimal(daily["observed"]) == -today
        assert (peak["result"], peak["limit"]) == ("reject", "100")
        assert Decimal(peak["observed"]) == drawdown

        async def halted() -> list[str]:
            return [c.reason for c in await engine.ledger.controls.active()]

        [reason] = await eventually(halted, message="a crossed loss limit should halt")
        assert reason.startswith("daily_loss:")


async def test_a_position_losing_while_nobody_trades_stores_its_peak_and_halts_the_account(
    database_url: URL,
) -> None:
    limits = {"max_daily_loss": "50", "max_drawdown": "1000"}
    async with running(database_url, "quiet-loss", limits) as run:
        engine = run.engine
        intent = buy(A, BTC, "0.1", "30000.5", "in")
        outcome, _ = await decide(run, intent)
        assert outcome == "reserved"

        async def filled() -> bool:
            order = await engine.ledger.orders.get(client_order_id("tctl", intent.key))
            return order is not None and order.state is OrderState.FILLED

        await eventually(filled, message="the buy should fill at the touch")
        # no order from here on: the engine watches the P&L by itself
        await move(run, BTC, Decimal("30999.5"), Decimal("31000.5"))

        async def stored_peak() -> Decimal | None:
            marks = await engine.ledger.loss_marks.read()
            return marks.peak_pnl if marks is not None and marks.peak_pnl > 90 else None

        peak = await eventually(stored_peak, message="the peak should be stored without orders")
        assert peak < 100  # 0.1 * (31000 - 30000.5) less the fee
        await move(run, BTC, Decimal("29499.5"), Decimal("29500.5"))

        async def halted() -> list[str]:
            return [c.reason for c in await engine.ledger.controls.active()]

        [reason] = await eventually(halted, message="the crossed daily loss should halt")
        assert reason.startswith("daily_loss: daily loss ")
        assert reason.endswith("exceeds 50: halting")

        # the halt and its incident are two writes: the control can be seen first
        async def loss_incidents() -> list[Any]:
            return [i for i in await engine.ledger.incidents.read() if i.kind == "loss_limit"]

        [incident] = await eventually(loss_incidents, message="the halt should raise an incident")
        assert incident.severity == "critical"
