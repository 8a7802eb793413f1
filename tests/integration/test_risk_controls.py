"""Account-level risk, persistent controls, balance reconciliation, operator requests, the lease:
against the real Postgres fixtures and the in-process paper venue."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper, OperatorDesk, halt_for_loss
from engine.domain.intents import Buy, Cancel, DecisionKey
from engine.domain.risk import Check, Limits
from engine.domain.risk.loss_marks import TradingDay
from engine.domain.types import (
    Asset,
    ControlKind,
    ControlScope,
    OrderState,
    Side,
    StrategyId,
    TimeInForce,
)
from engine.execution import Execution, ExecutionConfig
from engine.ledger.ledger import Ledger
from engine.ledger.records import OperatorRequestKind
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler
from engine.risk_gate import RiskGate
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.integration.test_execution import ACCOUNT, PREFIX, Clock, quote

A = StrategyId("strat-a")
B = StrategyId("strat-b")


#: the rig's balance settle window, in seconds of its hand-moved clock
SETTLE_S = 5.0


class Rig:
    def __init__(self, db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, limits: Limits):
        self.ledger = Ledger(db_engine, account=ACCOUNT, venue=venue.name, clock=clock)
        self.lease = LeaseKeeper(self.ledger, ttl=timedelta(seconds=3))
        self.conflator = Conflator()
        q = venue.quote(BTCUSDT)
        assert q is not None
        self.conflator.publish(q)
        self.portfolio = Portfolio(db_engine, ACCOUNT)
        self.gate = RiskGate(
            limits=LimitsBook(account=limits),
            market=self.conflator,
            portfolio=self.portfolio,
            clock=clock,
            ledger=self.ledger,
            refresh_interval_s=0,
        )
        self.execution = Execution(
            ledger=self.ledger,
            venue=venue,
            gate=self.gate,
            lease=self.lease,
            config=ExecutionConfig(account=ACCOUNT, order_id_prefix=PREFIX),
            clock=clock,
            on_fills=lambda fills: self.portfolio.mark_dirty(),
        )
        self.reconciler = Reconciler(
            ledger=self.ledger,
            execution=self.execution,
            prefix=PREFIX,
            balance_tolerance="1e-8",
            settle_s=SETTLE_S,
            monotonic=lambda: clock().timestamp(),
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="10"))
    return v


async def rig(db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, **limits: object) -> Rig:
    r = Rig(db_engine, venue, clock, Limits(**limits))  # type: ignore[arg-type]
    await r.lease.acquire()
    return r


def order(clock: Clock, strategy: StrategyId, qty: str, *, price: str | None = None, i: str = "1"):
    return Buy(
        key=DecisionKey(strategy_id=strategy, symbol=BTCUSDT, interval_key=i, side=Side.BUY),
        reason="test",
        md_ts=clock(),
        quantity=Decimal(qty),
        limit_price=None if price is None else Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


async def verdicts_of(db_engine: AsyncEngine, strategy: StrategyId) -> list[dict[str, str]]:
    async with db_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT verdicts FROM decisions WHERE strategy_id = :s"), {"s": strategy}
            )
        ).one()
    return list(row.verdicts)


async def test_two_strategies_together_cannot_exceed_the_account_exposure_the_second_is_resized(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(
        db_engine,
        venue,
        clock,
        max_account_exposure=Decimal(1000),
        resizable=frozenset({Check.ACCOUNT_EXPOSURE}),
    )
    # resting buys at 40000: 0.015 (600) + 0.015 (600) would be 1200 > 1000
    await r.execution.process([order(clock, A, "0.015", price="40000")])
    await r.execution.process([order(clock, B, "0.015", price="40000")])
    exposure = [v for v in await verdicts_of(db_engine, B) if v["check"] == "max_account_exposure"]
    assert exposure[0]["result"] == "resize"
    assert "from 0.015 to 0.010 (-0.005)" in exposure[0]["message"]
    b_orders = [o for o in await r.ledger.orders.open(B)]
    assert [o.requested_qty for o in b_orders] == [Decimal("0.01")]


async def test_a_halt_set_while_intents_are_queued_blocks_every_later_reserve_but_not_cancels(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "0.01", price="40000", i="rest")])
    (resting,) = await r.ledger.orders.open(A)
    for n in range(5):
        await r.execution.submit_intent(order(clock, A, "0.001", price="40000", i=f"q{n}"))
    # the CLI's path: another connection commits the halt before execution runs
    other = Ledger(db_engine, account=ACCOUNT, venue=venue.name)
    await other.controls.set(
        ControlScope.ACCOUNT, ACCOUNT, ControlKind.HALT, reason="t", set_by="t"
    )
    await r.execution.submit_intent(
        Cancel(
            key=DecisionKey(strategy_id=A, symbol=BTCUSDT, interval_key="c", side=Side.SELL),
            reason="cancel",
            md_ts=clock(),
            client_order_id=resting.client_order_id,
        )
    )
    runner = asyncio.create_task(r.execution.run())
    try:
        await asyncio.wait_for(r.execution.drain(), timeout=10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    async with db_engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM orders WHERE strategy_id = :s"), {"s": A})
        ).scalar()
    assert count == 1  # only the order reserved before the halt
    cancelled = await r.ledger.orders.get(resting.client_order_id)
    assert cancelled is not None
    assert cancelled.state is OrderState.CANCELED


async def test_crossing_the_daily_loss_halts_opens_an_incident_and_the_halt_survives_a_restart(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock, max_daily_loss=Decimal(50))
    await r.execution.rules_for(BTCUSDT)  # the instrument row: P&L needs the assets
    await r.execution.process([order(clock, A, "0.1", i="in")])  # bought at 50001
    venue.set_quote(quote(clock, "49000", "49001", size="10"))
    r.conflator.publish(quote(clock, "49000", "49001", size="10"))  # -100 unrealized
    await r.execution.process([order(clock, A, "0.001", i="more")])
    reason = r.gate.take_halt()
    assert reason is not None
    assert "daily_loss" in reason
    incident = await halt_for_loss(r.ledger, reason)
    # a new process: the halt is in the ledger and blocks its reservations
    clock.advance(10)
    again = await rig(db_engine, venue, clock)
    controls = await again.ledger.controls.active()
    assert [(c.scope, c.kind) for c in controls] == [(ControlScope.ACCOUNT, ControlKind.HALT)]
    await again.execution.process([order(clock, A, "0.001", i="after")])
    assert len(await again.ledger.orders.open(A)) == 0
    assert [i.id for i in await again.ledger.incidents.read()] == [incident]


async def test_the_loss_halt_incident_is_one_per_trading_day_in_the_accounts_zone(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    ledger = Ledger(db_engine, account=ACCOUNT, venue=venue.name, clock=clock)
    day = TradingDay(boundary=time(17), zone=ZoneInfo("America/New_York"))

    async def halt(at: str) -> int:
        now = datetime.fromisoformat(at)
        return await halt_for_loss(ledger, "daily_loss: over", day=day, now=now)

    # 18:00 and 22:00 in New York: one trading day that spans two UTC dates
    first = await halt("2026-11-30T23:00:00+00:00")
    assert await halt("2026-12-01T03:00:00+00:00") == first
    # 18:00 the next evening: the next trading day
    assert await halt("2026-12-01T23:00:00+00:00") != first
    days = sorted(i.details["day"] for i in await ledger.incidents.read())
    assert days == ["2026-11-30", "2026-12-01"]


async def test_an_unknown_venue_order_and_a_balance_drift_pause_the_right_scope_once(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "0.01", i="x")])  # strategy A trades BTC
    await r.reconciler.reconcile(startup=True)  # baseline
    assert await r.ledger.incidents.read() == []
    venue._wallets[Asset("BTC")].free += Decimal("0.012")  # injected: a deposit we never saw
    from engine.venues.base import OrderRequest

    await venue.submit(
        OrderRequest(
            client_order_id=f"{PREFIX}-zzzzzzzzzzzzzzzzzz",  # type: ignore[arg-type]
            symbol=BTCUSDT,
            side=Side.BUY,
            type=order(clock, A, "1", price="1").order_type,
            quantity=Decimal("0.001"),
            limit_price=Decimal("40000"),
            time_in_force=TimeInForce.GTC,
        )
    )
    first = await r.reconciler.reconcile()
    assert first.balance_drifts == [], "a drift is confirmed only after the settle window"
    assert "not confirmed yet" in first.balances_note
    for _ in range(2):
        clock.advance(SETTLE_S)
        report = await r.reconciler.reconcile()
    incidents = await r.ledger.incidents.read()
    kinds = sorted(i.kind for i in incidents)
    assert kinds == ["balance_drift", "unknown_venue_order"], [i.message for i in incidents]
    drift = next(i for i in incidents if i.kind == "balance_drift")
    assert (
        "strategy strat-a paused: venue balance BTC differs from ledger by 0.012" in drift.message
    )
    assert "tradectl reconcile --accept-balances" in drift.message
    paused = {(c.scope, c.target) for c in await r.ledger.controls.active()}
    assert (ControlScope.STRATEGY, A) in paused
    assert (ControlScope.SYMBOL, BTCUSDT) in paused
    assert report.balance_drifts
    assert report.balance_drifts[0]["asset"] == "BTC"
    # the operator accepts the venue's balance: the drift incident closes, nothing reopens
    accepted = await r.reconciler.reconcile(accept_balances=True)
    assert accepted.balances_accepted == ["BTC"]
    await r.reconciler.reconcile()
    assert [i.kind for i in await r.ledger.incidents.read()] == ["unknown_venue_order"]


async def test_base_asset_fees_are_netted_out_of_positions(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "0.01", i="f")])  # taker fee 0.1 % in BTC
    assert await r.ledger.risk_inputs.net_positions() == {(A, BTCUSDT): Decimal("0.00999")}
    await r.portfolio.refresh()
    assert (await r.portfolio.inventory(A))[BTCUSDT] == Decimal("0.00999")


async def test_operator_requests_run_on_the_lease_holder_cancel_all_ignores_halts(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    r = await rig(db_engine, venue, clock)
    await r.execution.process([order(clock, A, "0.01", price="40000", i="r1")])
    await r.ledger.controls.set(
        ControlScope.ACCOUNT, ACCOUNT, ControlKind.HALT, reason="t", set_by="t"
    )
    desk = OperatorDesk(
        r.ledger, holder=r.lease.holder, reconciler=r.reconciler, execution=r.execution, poll_s=0.05
    )
    task = asyncio.create_task(desk.run())
    try:
        cli = Ledger(db_engine, account=ACCOUNT, venue=venue.name)  # a second process
        req = await cli.operations.request(
            OperatorRequestKind.CANCEL_ALL, requested_by="cli:test", reason="flatten"
        )
        rec = await cli.operations.request(
            OperatorRequestKind.RECONCILE, requested_by="cli:test", reason="check"
        )

        async def handled(rid: int) -> dict[str, object] | None:
            done = await cli.operations.get(rid)
            return done.result if done is not None and done.handled_at is not None else None

        from tests.helpers import eventually

        assert (await eventually(lambda: handled(req.id)))["cancels_requested"] == 1
        assert (await eventually(lambda: handled(rec.id)))["ok"] is True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await r.ledger.orders.open(A) == []


async def test_two_engines_never_both_reserve_and_the_standby_takes_over_after_expiry(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    first = await rig(db_engine, venue, clock)
    second = Rig(db_engine, venue, clock, Limits())
    standby = asyncio.create_task(second.lease.acquire())
    await asyncio.sleep(0)
    assert not standby.done()
    # the first engine is killed: it stops renewing; after the TTL the standby takes over
    clock.advance(4)
    epoch = await asyncio.wait_for(standby, timeout=10)
    assert epoch == first.lease.epoch + 1
    # the old engine, still running, steps down at its next reservation and says why
    await first.execution.submit_intent(order(clock, A, "0.01", i="old"))
    await asyncio.wait_for(first.execution.run(), timeout=10)
    assert first.execution.stopped_reason is not None
    assert "lease lost" in first.execution.stopped_reason
    await second.execution.process([order(clock, A, "0.01", i="new")])
    async with db_engine.connect() as conn:
        epochs = (await conn.execute(text("SELECT lease_epoch FROM orders"))).scalars().all()
    assert epochs == [epoch]
