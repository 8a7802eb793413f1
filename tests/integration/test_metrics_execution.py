"""Metrics moved by the execution path, the lease, the reconciler and an outage: a real ledger and
the in-process paper venue, read back over HTTP. Each test has an account of its own, because
the registry is process-global."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.account_gauges import AccountGauges
from engine.controls import LeaseKeeper
from engine.crashpoints import CrashPoint, CrashPoints
from engine.domain.intents import Buy, DecisionKey, Hold
from engine.domain.risk import Check, Limits
from engine.domain.types import (
    AccountId,
    Asset,
    ControlKind,
    ControlScope,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
)
from engine.exceptions import DatabaseUnavailable, LeaseLost
from engine.execution import Execution, ExecutionConfig
from engine.ledger.ledger import Ledger
from engine.ledger.monitoring import Monitoring
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.outage import LedgerHealth
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler
from engine.risk_gate import RiskGate
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.helpers import eventually
from tests.integration.test_execution import PREFIX, Clock, quote
from tests.metrics_http import metrics_server, scrape

A = StrategyId("strat-a")
B = StrategyId("strat-b")


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    with metrics_server() as url:
        yield url


@pytest.fixture
def account() -> AccountId:
    return AccountId(f"metrics-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="10"))
    return v


class Rig:
    def __init__(
        self,
        db_engine: AsyncEngine,
        venue: PaperVenue,
        clock: Clock,
        account: AccountId,
        limits: LimitsBook,
        crash: CrashPoints | None = None,
    ) -> None:
        self.ledger = Ledger(db_engine, account=account, venue=venue.name, clock=clock)
        self.lease = LeaseKeeper(self.ledger, ttl=timedelta(seconds=3))
        conflator = Conflator()
        q = venue.quote(BTCUSDT)
        assert q is not None
        conflator.publish(q)
        portfolio = Portfolio(db_engine, account)
        self.gate = gate = RiskGate(
            limits=limits, market=conflator, portfolio=portfolio, clock=clock, ledger=self.ledger
        )
        self.execution = Execution(
            ledger=self.ledger,
            venue=venue,
            gate=gate,
            lease=self.lease,
            config=ExecutionConfig(account=account, order_id_prefix=PREFIX),
            clock=clock,
            crash=crash or CrashPoints(),
        )
        self._clock = clock
        self._monitoring = Monitoring(db_engine, account=account, venue=venue.name, clock=clock)

    def gauges(self, mark: Callable[[Symbol], Decimal | None]) -> AccountGauges:
        return AccountGauges(
            ledger=self.ledger,
            monitoring=self._monitoring,
            gate=self.gate,
            mark=mark,
            clock=self._clock,
            ledger_state=LedgerHealth(),
        )

    def reconciler(self, **options: Any) -> Reconciler:
        return Reconciler(
            ledger=self.ledger,
            execution=self.execution,
            prefix=PREFIX,
            balance_tolerance="1e-8",
            monotonic=lambda: self._clock().timestamp(),
            **options,
        )


def buy(clock: Clock, strategy: StrategyId, qty: str, *, price: str, i: str = "1") -> Buy:
    return Buy(
        key=DecisionKey(strategy_id=strategy, symbol=BTCUSDT, interval_key=i, side=Side.BUY),
        reason="test",
        md_ts=clock(),
        quantity=Decimal(qty),
        limit_price=Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


async def test_decisions_are_counted_by_outcome_and_denials_by_the_failing_check(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    limits = LimitsBook(
        strategies={
            A: Limits(max_order_qty=Decimal("0.02"), resizable=frozenset({Check.ORDER_QTY})),
            B: Limits(max_order_qty=Decimal("0.02")),
        }
    )
    r = Rig(db_engine, venue, clock, account, limits)
    await r.lease.acquire()
    hold = Hold(
        key=DecisionKey(strategy_id=A, symbol=BTCUSDT, interval_key="h", side=None),
        reason="nothing to do",
        md_ts=clock(),
    )
    await r.execution.process(
        [
            hold,
            buy(clock, A, "0.01", price="50001", i="fits"),
            buy(clock, A, "0.05", price="50001", i="resized"),
            buy(clock, B, "0.05", price="50001", i="denied"),
        ]
    )
    await r.ledger.controls.set(
        ControlScope.ACCOUNT, account, ControlKind.HALT, reason="test", set_by="test"
    )
    await r.execution.process([buy(clock, A, "0.01", price="50001", i="halted")])

    m = await scrape(metrics_url)
    a, b = {"account": account, "strategy": A}, {"account": account, "strategy": B}
    assert m.value("tradectl_decisions_total", **a, outcome="hold") == 1
    assert m.value("tradectl_decisions_total", **a, outcome="order") == 1
    assert m.value("tradectl_decisions_total", **a, outcome="resized") == 1
    assert m.value("tradectl_decisions_total", **a, outcome="denied") == 1
    assert m.value("tradectl_decisions_skipped_total", **a, check="control") == 1
    assert m.value("tradectl_decisions_total", **b, outcome="denied") == 1
    assert m.value("tradectl_decisions_skipped_total", **b, check="max_order_qty") == 1
    # the two orders that reached the venue: acknowledged and filled at their limit
    assert m.value("tradectl_marketdata_to_ack_seconds_count", **a, symbol="BTCUSDT") == 2
    assert m.value("tradectl_fills_total", **a, symbol="BTCUSDT") == 2
    assert m.value("tradectl_slippage_bps_count", **a) == 2
    assert m.value("tradectl_slippage_bps_sum", **a) == 0
    assert m.value("tradectl_fee_bps_count", **a) == 2
    # the paper venue charges its 0.1 % taker fee in the asset received (BTC)
    assert m.value("tradectl_fee_bps_sum", **a) == pytest.approx(20)
    assert m.value("tradectl_fees_total", **a, asset="BTC") == pytest.approx(0.00003)
    assert m.total("tradectl_fills_total", **b) == 0


class SlowAfterReserve(CrashPoints):
    """Time passes between the reservation and the send (a slow event loop, say)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def hit(self, point: CrashPoint) -> None:
        if point is CrashPoint.AFTER_RESERVE:
            self.clock.advance(10)


async def test_an_order_the_final_gate_keeps_off_the_wire_counts_as_skipped_by_its_check(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    limits = LimitsBook(account=Limits(max_price_age=timedelta(seconds=5)))
    r = Rig(db_engine, venue, clock, account, limits, crash=SlowAfterReserve(clock))
    await r.lease.acquire()
    await r.execution.process([buy(clock, A, "0.01", price="50001")])
    m = await scrape(metrics_url)
    a = {"account": account, "strategy": A}
    assert m.value("tradectl_decisions_total", **a, outcome="order") == 1
    assert m.value("tradectl_decisions_skipped_total", **a, check="price_age") == 1
    assert m.total("tradectl_marketdata_to_ack_seconds_count", **a) == 0


async def test_a_fill_seen_by_ack_stream_and_lookup_is_counted_once(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    r = Rig(db_engine, venue, clock, account, LimitsBook.empty())
    await r.lease.acquire()
    await r.execution.process([buy(clock, A, "0.01", price="50001")])  # filled with its ack
    fills = await r.execution.venue.trades_since(BTCUSDT, None, limit=10)
    assert len(fills) == 1
    r.execution.on_fills(fills)  # the same trade again, as the stream brings it
    await r.execution.sync_fills(since=clock() - timedelta(minutes=1))  # and the trade query
    m = await scrape(metrics_url)
    assert m.value("tradectl_fills_total", account=account, strategy=A, symbol="BTCUSDT") == 1


async def test_a_lost_lease_reads_not_held_and_counts_an_error(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    ledger = Ledger(db_engine, account=account, venue=venue.name, clock=clock)
    keeper = LeaseKeeper(ledger, ttl=timedelta(seconds=3))
    await keeper.acquire()
    assert (await scrape(metrics_url)).value("tradectl_lease_held", account=account) == 1
    clock.advance(4)  # expired: another process takes over
    assert await ledger.leases.acquire("another-host", timedelta(seconds=3)) is not None
    with pytest.raises(LeaseLost):
        await keeper.renew()
    m = await scrape(metrics_url)
    assert m.value("tradectl_lease_held", account=account) == 0
    assert m.value("tradectl_errors_total", account=account, component="lease") == 1


async def test_an_outage_counts_one_error_however_many_tasks_report_it(
    account: AccountId, metrics_url: str
) -> None:
    health = LedgerHealth(account=account)
    health.started()
    for where in ("execution", "fills", "reconcile"):
        health.unavailable(DatabaseUnavailable("connection refused"), where=where)
    m = await scrape(metrics_url)
    assert m.value("tradectl_errors_total", account=account, component="ledger") == 1


async def test_the_reconciler_reports_expected_minus_venue_balance_per_asset(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    r = Rig(db_engine, venue, clock, account, LimitsBook.empty())
    await r.lease.acquire()
    reconciler = r.reconciler(settle_s=5)
    await r.execution.process([buy(clock, A, "0.01", price="50001")])
    await reconciler.reconcile(startup=True)  # the baseline
    await reconciler.reconcile()  # compared with it: they agree
    m = await scrape(metrics_url)
    assert m.value("tradectl_balance_difference", account=account, asset="BTC") == 0
    venue._wallets[Asset("BTC")].free += Decimal("0.012")  # a deposit the ledger never saw
    await reconciler.reconcile()
    m = await scrape(metrics_url)
    assert m.value("tradectl_balance_difference", account=account, asset="BTC") == pytest.approx(
        -0.012
    )


async def test_a_periodic_pass_waits_while_the_venue_read_budget_is_low_unless_asked_for(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    r = Rig(db_engine, venue, clock, account, LimitsBook.empty())
    await r.lease.acquire()
    headroom = [0.1]
    reconciler = r.reconciler(read_headroom=lambda: headroom[0])
    await reconciler.reconcile(startup=True)

    async def passes(outcome: str) -> float:
        m = await scrape(metrics_url)
        # no series yet: none of that outcome
        return m.value("tradectl_reconcile_passes_total", account=account, outcome=outcome) or 0

    periodic = asyncio.create_task(reconciler.run_periodic(0.01))
    try:
        await eventually(lambda: _at_least(passes("deferred"), 3))
        assert await passes("done") == 0
        # a pass someone asked for (a stream came back, a write failed) runs all the same
        ticket = reconciler.request()
        await eventually(lambda: reconciler.completed_through >= ticket)
        headroom[0] = 1.0
        await eventually(lambda: _at_least(passes("done"), 2))
    finally:
        periodic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await periodic


async def _at_least(value: Awaitable[float], n: float) -> bool:
    return await value >= n


async def _insert_fill(db_engine: AsyncEngine, account: str, fill_id: int, trade_id: str) -> None:
    """A BUY of 0.001 at 50000 with a 1 USDT fee, of the account's one order, under an id."""
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO fills (id, venue, symbol, trade_id, client_order_id, account, side,
                                      qty, price, fee, fee_asset, venue_ts, received_at,
                                      recorded_at)
                   SELECT :id, venue, symbol, :trade, client_order_id, account, 'BUY',
                          0.001, 50000, 1, 'USDT', now(), now(), now()
                   FROM orders WHERE account = :account"""
            ),
            {"id": fill_id, "trade": trade_id, "account": account},
        )


async def test_pnl_folds_a_fill_committed_after_a_higher_fill_id_once(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    r = Rig(db_engine, venue, clock, account, LimitsBook.empty())
    await r.lease.acquire()
    await r.execution.process([buy(clock, A, "0.01", price="50001")])
    gauges = r.gauges(mark=lambda symbol: Decimal(50000))
    labels = {"account": account, "strategy": A, "symbol": "BTCUSDT"}

    async def realized() -> float | None:
        await gauges.refresh()
        return (await scrape(metrics_url)).value("tradectl_pnl_realized", **labels)

    async with db_engine.connect() as conn:
        first_id = (await conn.execute(text("SELECT max(id) FROM fills"))).scalar_one()
    before = await realized()
    assert before is not None
    # a fill with a higher id commits first; one with a lower id commits after it was read
    await _insert_fill(db_engine, account, first_id + 500, "late-high")
    assert await realized() == pytest.approx(before - 1)
    await _insert_fill(db_engine, account, first_id + 200, "late-low")
    assert await realized() == pytest.approx(before - 2)
    assert await realized() == pytest.approx(before - 2), "folded once, however often read"


async def test_risk_utilization_reports_each_configured_limit_with_resting_orders(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    limits = LimitsBook(
        account=Limits(max_account_exposure=Decimal(1000)),
        strategies={A: Limits(max_position_qty=Decimal("0.04"))},
    )
    r = Rig(db_engine, venue, clock, account, limits)
    await r.lease.acquire()
    # a buy resting far below the market: nothing is held, the worst case counts it
    await r.execution.process([buy(clock, A, "0.01", price="40000")])
    gauges = r.gauges(mark=lambda symbol: None)
    await gauges.refresh()
    m = await scrape(metrics_url)
    used = {"account": account, "strategy": A}
    assert m.value("tradectl_risk_utilization", **used, limit="max_position_qty") == 0.25
    # valued at the mid (50000.5): 500.005 of 1000
    assert m.value(
        "tradectl_risk_utilization", account=account, strategy="*", limit="max_account_exposure"
    ) == pytest.approx(0.500005)
    assert m.value("tradectl_orders", account=account, state="OPEN") == 1


async def test_risk_utilization_of_each_strategy_counts_only_its_own_orders(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    per_strategy = Limits(max_position_qty=Decimal("0.04"))
    limits = LimitsBook(account=Limits(), strategies={A: per_strategy, B: per_strategy})
    r = Rig(db_engine, venue, clock, account, limits)
    await r.lease.acquire()
    await r.execution.process(
        [buy(clock, A, "0.01", price="40000"), buy(clock, B, "0.03", price="40000")]
    )
    gauges = r.gauges(mark=lambda symbol: None)
    await gauges.refresh()
    m = await scrape(metrics_url)
    for strategy, share in ((A, 0.25), (B, 0.75)):
        used = m.value(
            "tradectl_risk_utilization",
            account=account,
            strategy=strategy,
            limit="max_position_qty",
        )
        assert used == pytest.approx(share)


async def test_risk_utilization_reports_the_account_symbol_category_and_equity_limits(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, account: AccountId, metrics_url: str
) -> None:
    limits = LimitsBook(
        account=Limits(
            max_symbol_position={BTCUSDT: Decimal("0.04")},
            max_symbol_notional={BTCUSDT: Decimal(1000)},
            categories={BTCUSDT: "l1"},
            max_category_gross={"l1": Decimal(2000)},
            max_category_net={"l1": Decimal(1000)},
            max_position_equity_pct=Decimal(1),
            equity_asset="USDT",
        ),
    )
    r = Rig(db_engine, venue, clock, account, limits)
    await r.lease.acquire()
    await r.ledger.balances.record(await venue.balances())  # 100000 USDT: 1 % is 1000
    await r.execution.process([buy(clock, A, "0.01", price="40000")])
    gauges = r.gauges(mark=lambda symbol: None)
    await gauges.refresh()
    m = await scrape(metrics_url)

    def used(limit: str) -> float | None:
        return m.value("tradectl_risk_utilization", account=account, strategy="*", limit=limit)

    # the resting 0.01 valued at the mid (50000.5): 500.005
    assert used("max_symbol_position") == 0.25
    assert used("max_symbol_notional") == pytest.approx(0.500005)
    assert used("max_category_gross") == pytest.approx(0.2500025)
    assert used("max_category_net") == pytest.approx(0.500005)
    assert used("max_position_equity_pct") == pytest.approx(0.500005)  # 0.5 % of 1 %
