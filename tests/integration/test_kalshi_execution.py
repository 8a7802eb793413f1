"""Done-when for Kalshi's exactly-once: a decision whose create answer is lost is found by
scanning and never submitted twice, even while the simulator's read lag hides it (past the
engine's consistency window), through the real Execution path, a real Postgres and the Kalshi
adapter over the Kalshi simulator's sockets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, DecisionKey
from engine.domain.market import Quote
from engine.domain.types import AccountId, OrderState, Side, StrategyId, TimeInForce, utc_now
from engine.execution import Execution, ExecutionConfig
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.reconcile import Reconciler
from engine.risk_gate import RiskGate
from engine.venues.kalshi import KalshiVenue
from engine.venues.kalshi_simulator import KalshiSimConfig, KalshiSimHandle, run_kalshi_simulator
from engine.venues.simulator.faults import FaultPlan
from tests.contract.test_kalshi_simulator_contract import MARKET, adapter_for
from tests.helpers import eventually

ACCOUNT = AccountId("kalshi-acct")
PREFIX = "kx"
STRATEGY = StrategyId("fair")
#: the engine gives up waiting for an unseen order after this; the read lag is longer
WINDOW = timedelta(milliseconds=200)
READ_LAG_S = 1.5


@dataclass
class Engine:
    ledger: Ledger
    execution: Execution
    venue: KalshiVenue
    lease: LeaseKeeper


async def start_engine(db_engine: AsyncEngine, sim: KalshiSimHandle) -> Engine:
    venue = adapter_for(sim)
    ledger = Ledger(db_engine, account=ACCOUNT, venue=venue.name, clock=utc_now)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=30))
    await lease.acquire()
    conflator = Conflator()
    now = utc_now()
    conflator.publish(
        Quote(
            symbol=MARKET,
            bid=Decimal("0.45"),
            bid_size=Decimal(500),
            ask=Decimal("0.47"),
            ask_size=Decimal(500),
            venue_ts=now,
            received_at=now,
        )
    )
    portfolio = Portfolio(db_engine, ACCOUNT)
    gate = RiskGate(limits=LimitsBook.empty(), market=conflator, portfolio=portfolio, clock=utc_now)
    execution = Execution(
        ledger=ledger,
        venue=venue,
        gate=gate,
        lease=lease,
        config=ExecutionConfig(account=ACCOUNT, order_id_prefix=PREFIX, consistency_window=WINDOW),
        clock=utc_now,
        on_fills=lambda fills: portfolio.mark_dirty(),
    )
    return Engine(ledger=ledger, execution=execution, venue=venue, lease=lease)


def buy(limit: str) -> Buy:
    return Buy(
        key=DecisionKey(strategy_id=STRATEGY, symbol=MARKET, interval_key="t1", side=Side.BUY),
        reason="fair value above the ask",
        md_ts=utc_now(),
        quantity=Decimal("3"),
        limit_price=Decimal(limit),
        time_in_force=TimeInForce.GTC,
    )


@pytest.mark.parametrize(
    ("limit", "settled", "restart"),
    [
        ("0.30", OrderState.OPEN, False),  # rests: a resend would meet a 409
        ("0.47", OrderState.FILLED, False),  # fills at once: a resend would be a second order
        ("0.47", OrderState.FILLED, True),  # and a new process knows nothing of the first
    ],
    ids=["resting", "filled", "filled-after-restart"],
)
async def test_a_lost_create_answer_is_found_by_scanning_and_never_submitted_twice(
    db_engine: AsyncEngine, limit: str, settled: OrderState, restart: bool
) -> None:
    lost = {"kind": "drop_response", "endpoints": ["POST /portfolio/events/orders"]}
    config = KalshiSimConfig(
        seed=5, read_lag_s=READ_LAG_S, faults=FaultPlan.from_mapping([{**lost, "max_count": 1}])
    )
    async with run_kalshi_simulator(config) as sim:
        engine = await start_engine(db_engine, sim)
        intent = buy(limit)
        coid = client_order_id(PREFIX, intent.key)

        await engine.execution.process([intent])

        order = await engine.ledger.orders.get(coid)
        assert order is not None
        assert order.state is OrderState.UNKNOWN
        assert sim.state.fault_counts()["drop_response"] == 1
        if restart:
            # a stop that hands the lease over (after a kill -9 the TTL outlasts the lag)
            await engine.lease.release()
            await engine.venue.close()
            engine = await start_engine(db_engine, sim)

        # the lag hides the order well past the consistency window; each pass only looks
        await engine.execution.resolve_unresolved()
        hidden = await engine.ledger.orders.get(coid)
        assert hidden is not None
        assert hidden.state is OrderState.UNKNOWN

        async def settled_by_lookup() -> bool:
            await engine.execution.resolve_unresolved()
            assert sim.state.submissions.count(coid) == 1, "the order was sent again"
            current = await engine.ledger.orders.get(coid)
            return current is not None and current.state is settled

        await eventually(settled_by_lookup, message=f"the order never became {settled}")

        order = await engine.ledger.orders.get(coid)
        assert order is not None
        assert [order.venue_order_id] == sim.state.venue_orders_by_client_id()[coid]
        assert sim.state.submissions.count(coid) == 1
        await engine.venue.close()


async def test_many_lost_creates_are_settled_by_one_listing_of_the_market(
    db_engine: AsyncEngine,
) -> None:
    """Bulk recovery: ``orders_since`` (the Kalshi scan) settles every unresolved order of a
    market it lists, without a lookup each and without sending any of them again."""
    lost = {"kind": "drop_response", "endpoints": ["POST /portfolio/events/orders"]}
    config = KalshiSimConfig(seed=6, faults=FaultPlan.from_mapping([{**lost, "max_count": 6}]))
    async with run_kalshi_simulator(config) as sim:
        engine = await start_engine(db_engine, sim)
        intents = [
            Buy(
                key=DecisionKey(
                    strategy_id=STRATEGY, symbol=MARKET, interval_key=f"b{i}", side=Side.BUY
                ),
                reason="ladder",
                md_ts=utc_now(),
                quantity=Decimal("2"),
                limit_price=Decimal("0.2") + Decimal("0.01") * i,
                time_in_force=TimeInForce.GTC,
            )
            for i in range(6)
        ]
        await engine.execution.process(intents)
        coids = [client_order_id(PREFIX, i.key) for i in intents]
        for coid in coids:
            order = await engine.ledger.orders.get(coid)
            assert order is not None
            assert order.state is OrderState.UNKNOWN

        sim.state.requests.clear()
        await engine.execution.resolve_unresolved()

        for coid in coids:
            order = await engine.ledger.orders.get(coid)
            assert order is not None
            assert order.state is OrderState.OPEN
            assert [order.venue_order_id] == sim.state.venue_orders_by_client_id()[coid]
        assert all(sim.state.submissions.count(c) == 1 for c in coids)
        assert sim.state.requests["GET /portfolio/orders"] == 1  # one listing, no scan each
        await engine.venue.close()


async def test_a_stop_waits_for_the_fills_a_create_answer_announced(
    db_engine: AsyncEngine,
) -> None:
    """Kalshi's create answer says "filled 3" without the fills (the stream brings them, and
    the read lag hides them from REST for a while): a graceful stop waits for them rather than
    leave the ledger short (chaos kalshi seed 3), for a bounded while only."""
    async with run_kalshi_simulator(KalshiSimConfig(seed=8, read_lag_s=1.0)) as sim:
        engine = await start_engine(db_engine, sim)
        intent = buy("0.47")  # crosses the ask: filled in the answer
        coid = client_order_id(PREFIX, intent.key)
        await engine.execution.process([intent])
        order = await engine.ledger.orders.get(coid)
        assert order is not None
        assert order.state is OrderState.FILLED
        assert order.filled_qty == 0  # no stream is read here, REST lags: the fills are out

        waiting = asyncio.create_task(engine.execution.wait_for_announced_fills())
        # several polls of the ledger, all inside the read lag: nothing can bring the fills
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done
        # bounded: it gives up (the next start fetches them)
        assert await asyncio.wait_for(waiting, timeout=30) is False

        async def fills_in() -> bool:
            await engine.execution.sync_fills([MARKET])  # what the stream would have brought
            current = await engine.ledger.orders.get(coid)
            return current is not None and current.filled_qty == 3

        await eventually(fills_in, message="the fills never came")
        assert await engine.execution.wait_for_announced_fills() is True
        await engine.venue.close()


async def test_a_first_balance_check_under_read_lag_bakes_no_lagging_fill_into_the_baseline(
    db_engine: AsyncEngine,
) -> None:
    """The first check of an account takes the venue's balances as the baseline. Its fills are
    not in the ledger yet and REST still hides them (the read lag): a baseline taken then holds
    them, and they count a second time when they land (chaos kalshi seed 0: a false drift)."""
    async with run_kalshi_simulator(KalshiSimConfig(seed=8, read_lag_s=1.0)) as sim:
        engine = await start_engine(db_engine, sim)
        reconciler = Reconciler(
            ledger=engine.ledger,
            execution=engine.execution,
            prefix=PREFIX,
            balance_tolerance="0",
            settle_s=0,
        )
        await engine.execution.process([buy("0.47")])  # filled in the answer; no stream here

        await reconciler.reconcile()  # the first check: no baseline yet

        async def fills_in() -> bool:
            await engine.execution.sync_fills([MARKET])
            return await engine.ledger.balances.fill_watermark() > 0

        await eventually(fills_in, message="the fills never came")
        looks = [await reconciler.reconcile() for _ in range(2)]  # a drift is confirmed by two
        assert all(r.balances_checked for r in looks), [r.balances_note for r in looks]
        assert [r.balance_drifts for r in looks] == [[], []]
        await engine.venue.close()
