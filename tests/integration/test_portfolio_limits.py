"""Concentration, account-wide and equity limits, and loss limits that survive a restart:
configured in the TOML, through the real gate and execution on Postgres and the paper venue,
each verdict stored with the values it used."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import halt_for_loss
from engine.domain.intents import Buy, DecisionKey
from engine.domain.market import Quote
from engine.domain.risk import Limits
from engine.domain.types import ControlKind, ControlScope, Side, StrategyId, Symbol, TimeInForce
from engine.loss_halt import lift_expired_loss_halt
from engine.strategy_config import parse_trading_config
from engine.venues.paper import BTCUSDT, PRES_YES, PaperVenue, default_paper_venue
from tests.integration.test_execution import Clock, quote
from tests.integration.test_risk_controls import A, B, Rig

BASE_STRATEGY = {"id": "x", "kind": "fair_value", "symbols": [PRES_YES]}
FV_PARAMS = {"fair": "0.55", "edge": "0.02", "qty": "10", "max_inventory": "100"}


def toml_limits(account_limits: dict[str, Any], **top: Any) -> Limits:
    """The account limits as the engine reads them from the strategies file."""
    raw = {
        "strategy": [{**BASE_STRATEGY, "params": FV_PARAMS}],
        "account": {"limits": account_limits},
        **top,
    }
    return parse_trading_config(raw, source=Path("<test>")).account_limits


async def rig(db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, limits: Limits) -> Rig:
    r = Rig(db_engine, venue, clock, limits)
    pres = venue.quote(PRES_YES)
    if pres is not None:
        r.conflator.publish(pres)
    await r.lease.acquire()
    for symbol in (BTCUSDT, PRES_YES):
        await r.execution.rules_for(symbol)  # the instrument rows: P&L needs the assets
    return r


def buy(clock: Clock, strategy: StrategyId, symbol: Symbol, qty: str, price: str, i: str = "1"):
    return Buy(
        key=DecisionKey(strategy_id=strategy, symbol=symbol, interval_key=i, side=Side.BUY),
        reason="test",
        md_ts=clock(),
        quantity=Decimal(qty),
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


async def verdict(db_engine: AsyncEngine, strategy: StrategyId, check: str) -> dict[str, str]:
    """The stored verdict of ``check`` in the strategy's latest decision."""
    async with db_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT verdicts FROM decisions WHERE strategy_id = :s "
                    "ORDER BY decided_at DESC LIMIT 1"
                ),
                {"s": strategy},
            )
        ).one()
    (found,) = [v for v in row.verdicts if v["check"] == check]
    return dict(found)


def paper(clock: Clock) -> PaperVenue:
    venue = default_paper_venue((BTCUSDT, PRES_YES), seed=3, clock=clock)
    venue.set_quote(quote(clock, "50000", "50001", size="10"))
    return venue


async def test_a_category_gross_limit_counts_every_strategy_and_rejects_with_its_values(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits(
        {"max_category_gross": {"elections": "60"}},
        instruments={"categories": {PRES_YES: "elections"}},
    )
    pres = Quote(
        symbol=PRES_YES, bid=Decimal("0.50"), bid_size=Decimal(1000), ask=Decimal("0.52"),
        ask_size=Decimal(1000), venue_ts=clock(), received_at=clock(),
    )  # fmt: skip
    venue.set_quote(pres)
    r = await rig(db_engine, venue, clock, limits)
    r.conflator.publish(pres)
    # resting buys at 0.40: A's 100 (40) fits; B's 60 more (24) would make 64 > 60
    await r.execution.process([buy(clock, A, PRES_YES, "100", "0.40")])
    await r.execution.process([buy(clock, B, PRES_YES, "60", "0.40")])
    found = await verdict(db_engine, B, "max_category_gross")
    assert found["result"] == "reject"
    assert (found["limit"], found["observed"]) == ("60", "64")
    assert "category elections" in found["message"]
    assert len(await r.ledger.orders.open(B)) == 0


async def test_an_account_symbol_position_limit_resizes_the_second_strategy(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    limits = toml_limits(
        {"max_symbol_position": {BTCUSDT: "0.015"}, "resize": ["max_symbol_position"]}
    )
    r = await rig(db_engine, paper(clock), clock, limits)
    await r.execution.process([buy(clock, A, BTCUSDT, "0.01", "40000")])
    await r.execution.process([buy(clock, B, BTCUSDT, "0.01", "40000")])
    found = await verdict(db_engine, B, "max_symbol_position")
    assert (found["result"], found["limit"], found["observed"]) == ("resize", "0.015", "0.02")
    assert [o.requested_qty for o in await r.ledger.orders.open(B)] == [Decimal("0.005")]


async def test_a_position_limit_as_a_share_of_equity_uses_the_recorded_cash(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_position_equity_pct": "1", "equity_asset": "USDT"})
    r = await rig(db_engine, venue, clock, limits)
    await r.ledger.balances.record(await venue.balances())  # 100000 USDT: 1 % is 1000
    await r.execution.process([buy(clock, A, BTCUSDT, "0.05", "40000")])  # 2000
    found = await verdict(db_engine, A, "max_position_equity_pct")
    assert (found["result"], found["limit"], found["observed"]) == ("reject", "1", "2")
    assert "notional 2000 of equity 100000" in found["message"]


async def losing_position(r: Rig, venue: PaperVenue, clock: Clock) -> None:
    """Buy 0.1 BTC at 50001, mark it up to 51000 (the peak), then down to 49500."""
    await r.execution.process([buy(clock, A, BTCUSDT, "0.1", "50001", i="in")])
    for bid, ask in (("51000", "51001"), ("49500", "49501")):
        clock.advance(1)
        venue.set_quote(quote(clock, bid, ask, size="10"))
        r.conflator.publish(quote(clock, bid, ask, size="10"))
        r.portfolio.mark_dirty()
        await r.gate.prepare()


async def test_a_restart_in_the_middle_of_a_losing_day_keeps_the_daily_loss_and_drawdown(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_daily_loss": "1000", "max_drawdown": "1000"})
    first = await rig(db_engine, venue, clock, limits)
    await first.gate.load_history()
    await losing_position(first, venue, clock)
    before = first.gate.loss_figures()
    assert before is not None
    today, drawdown = before
    assert drawdown - (-today) > 0  # the peak was above the day's start
    # a new process over the same database, at the same marks
    clock.advance(5)
    again = await rig(db_engine, venue, clock, limits)
    again.conflator.publish(quote(clock, "49500", "49501", size="10"))
    await again.gate.load_history()
    assert again.gate.loss_figures() == before
    await again.execution.process([buy(clock, A, BTCUSDT, "0.001", "40000", i="after")])
    daily = await verdict(db_engine, A, "daily_loss")
    peak = await verdict(db_engine, A, "drawdown")
    assert Decimal(daily["observed"]) == -today
    assert Decimal(peak["observed"]) == drawdown


async def test_a_carried_position_counts_only_what_it_moved_since_the_day_boundary(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_daily_loss": "1000"})
    r = await rig(db_engine, venue, clock, limits)
    await r.gate.load_history()
    await losing_position(r, venue, clock)  # about -50 open P&L by the end of the day
    clock.now = clock.now.replace(hour=23, minute=59, second=59)
    await r.gate._refresh_slow(force=True)
    clock.advance(2)  # a new UTC day, the same marks
    await r.gate._refresh_slow(force=True)
    assert r.gate.loss_figures() is not None
    today, _ = r.gate.loss_figures()  # type: ignore[misc]
    assert today == 0
    clock.advance(1)
    r.conflator.publish(quote(clock, "49400", "49401", size="10"))
    today, _ = r.gate.loss_figures()  # type: ignore[misc]
    # 0.0999 held (the fee was taken in BTC) * -100 since the boundary, not the carried loss
    assert today == Decimal("-9.99")


async def test_a_daily_loss_halt_lifts_itself_at_the_next_boundary_and_says_so_in_the_journal(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_daily_loss": "50", "daily_loss_resume": "next_day"})
    r = await rig(db_engine, venue, clock, limits)
    await r.gate.load_history()
    await losing_position(r, venue, clock)
    await r.execution.process([buy(clock, A, BTCUSDT, "0.001", "40000", i="more")])
    reason = r.gate.take_halt()
    assert reason is not None
    assert reason.startswith("daily_loss:")
    await halt_for_loss(r.ledger, reason)
    assert not await lift_expired_loss_halt(r.ledger, limits, clock())  # the same day
    clock.now = clock.now.replace(hour=23, minute=59)
    clock.advance(120)
    assert await lift_expired_loss_halt(r.ledger, limits, clock())
    assert await r.ledger.controls.active() == []
    (action,) = [a for a in await r.ledger.journal.read() if a.actor == "risk"]
    assert action.scope is ControlScope.ACCOUNT
    assert "lifted at the day boundary" in action.reason
    assert "daily_loss" in action.reason


async def test_a_daily_loss_halt_set_to_wait_for_a_human_stays(db_engine: AsyncEngine) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_daily_loss": "50"})
    r = await rig(db_engine, venue, clock, limits)
    await halt_for_loss(r.ledger, "daily_loss: daily loss 60 exceeds 50: halting")
    clock.advance(86_400)
    assert not await lift_expired_loss_halt(r.ledger, limits, clock())
    controls = await r.ledger.controls.active()
    assert [(c.scope, c.kind) for c in controls] == [(ControlScope.ACCOUNT, ControlKind.HALT)]


async def test_the_loss_watch_reports_a_crossing_once_in_the_order_checks_words(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = paper(clock)
    limits = toml_limits({"max_daily_loss": "50", "max_drawdown": "100"})
    r = await rig(db_engine, venue, clock, limits)
    await r.gate.load_history()
    await losing_position(r, venue, clock)  # about 50 lost today, 150 from the peak
    await r.gate.watch_losses()
    reason = r.gate.take_halt()
    assert reason is not None
    daily, drawdown = reason.split("; ")
    assert daily.startswith("daily_loss: daily loss ")
    assert drawdown.startswith("drawdown: drawdown ")
    assert drawdown.endswith("exceeds 100: halting")
    await r.gate.watch_losses()
    assert r.gate.take_halt() is None  # still crossed: already reported
