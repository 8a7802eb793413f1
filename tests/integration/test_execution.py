"""The durable execution protocol against a real Postgres and the in-process paper venue."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.crashpoints import CrashPoint, CrashPoints, SimulatedCrash
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, DecisionKey, Hold, Sell
from engine.domain.market import Quote
from engine.domain.types import (
    AccountId,
    ClientOrderId,
    ControlKind,
    ControlScope,
    OrderState,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
)
from engine.execution import Execution, ExecutionConfig, FillPath
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.venues.base import FillReport, OrderReport, UserEvent
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.helpers import eventually

ACCOUNT = AccountId("acct-1")
PREFIX = "tst"
STRATEGY = StrategyId("strat-a")


class Clock:
    """A clock the test moves by hand, shared by the engine and the paper venue."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    """One engine incarnation over a shared database and venue."""

    ledger: Ledger
    execution: Execution
    fills: FillPath
    conflator: Conflator
    lease: LeaseKeeper


def quote(clock: Clock, bid: str, ask: str, size: str = "1") -> Quote:
    return Quote(
        symbol=BTCUSDT,
        bid=Decimal(bid),
        bid_size=Decimal(size),
        ask=Decimal(ask),
        ask_size=Decimal(size),
        venue_ts=clock(),
        received_at=clock(),
    )


async def make_rig(
    db_engine: AsyncEngine,
    venue: PaperVenue,
    clock: Clock,
    crash: CrashPoints | None = None,
    *,
    late_accept: timedelta = timedelta(0),
) -> Rig:
    ledger = Ledger(db_engine, account=ACCOUNT, venue=venue.name, clock=clock)
    lease = LeaseKeeper(ledger, ttl=timedelta(seconds=3))
    await lease.acquire()
    conflator = Conflator()
    q = venue.quote(BTCUSDT)
    if q is not None:
        conflator.publish(q)
    portfolio = Portfolio(db_engine, ACCOUNT)
    gate = RiskGate(limits=LimitsBook.empty(), market=conflator, portfolio=portfolio, clock=clock)
    execution = Execution(
        ledger=ledger,
        venue=venue,
        gate=gate,
        lease=lease,
        config=ExecutionConfig(
            account=ACCOUNT,
            order_id_prefix=PREFIX,
            consistency_window=timedelta(seconds=3),
            late_accept=late_accept,
        ),
        clock=clock,
        crash=crash or CrashPoints(),
        on_fills=lambda fills: portfolio.mark_dirty(),
    )
    return Rig(ledger, execution, FillPath(ledger=ledger, execution=execution), conflator, lease)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def venue(clock: Clock) -> PaperVenue:
    v = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    v.set_quote(quote(clock, "50000", "50001", size="1"))
    return v


def buy(clock: Clock, qty: str = "0.01", price: str | None = None, interval: str = "i1") -> Buy:
    return Buy(
        key=DecisionKey(strategy_id=STRATEGY, symbol=BTCUSDT, interval_key=interval, side=Side.BUY),
        reason="test buy",
        md_ts=clock(),
        quantity=Decimal(qty),
        limit_price=None if price is None else Decimal(price),
        time_in_force=TimeInForce.GTC,
    )


def coid_of(intent: Buy | Sell) -> ClientOrderId:
    return client_order_id(PREFIX, intent.key)


async def apply_all(rig: Rig, events: list[UserEvent]) -> None:
    for event in events:
        await rig.fills.apply(event)


async def converge(rig: Rig) -> None:
    """What a new engine does at startup, plus the periodic resolution that follows."""
    await rig.execution.recover()


async def crashed_after_reserve(db_engine: AsyncEngine, venue: PaperVenue, clock: Clock) -> Buy:
    """An engine that reserved an order and died before sending it (or recording a send)."""
    first = await make_rig(
        db_engine, venue, clock, CrashPoints(CrashPoint.AFTER_RESERVE.value, mode="raise")
    )
    intent = buy(clock)
    with pytest.raises(SimulatedCrash):
        await first.execution.process([intent])
    return intent


async def assert_invariants(db_engine: AsyncEngine, venue: PaperVenue) -> None:
    """The chaos invariants from ARCHITECTURE.md, checked from the venue's truth and plain SQL."""
    attempts: Counter[str] = Counter()
    for report in venue.all_orders().orders:
        attempts[report.client_order_id] += 1
    assert all(n == 1 for n in attempts.values()), f"duplicate venue orders: {attempts}"

    async with db_engine.connect() as conn:
        ledger_fills = {
            (r.symbol, r.trade_id): (r.qty, r.price, r.fee)
            for r in await conn.execute(text("SELECT symbol, trade_id, qty, price, fee FROM fills"))
        }
        positions = {
            r.symbol: r.net_qty
            for r in await conn.execute(
                text("SELECT symbol, sum(net_qty) AS net_qty FROM positions GROUP BY symbol")
            )
        }
        states = {
            r.client_order_id: OrderState(r.state)
            for r in await conn.execute(text("SELECT client_order_id, state FROM orders"))
        }
    venue_fills = {(f.symbol, f.trade_id): (f.quantity, f.price, f.fee) for f in venue.all_fills()}
    assert ledger_fills == venue_fills
    # the paper venue charges buy commissions in the asset received, so the holding is the
    # signed sum of fills less the fees paid in BTC
    net = sum(
        (
            f.quantity * f.side.sign - (f.fee if f.fee_asset == "BTC" else Decimal(0))
            for f in venue.all_fills()
            if f.symbol == BTCUSDT
        ),
        Decimal(0),
    )
    assert positions.get(BTCUSDT, Decimal(0)) == net
    for coid in attempts:
        venue_state = (await venue.find_order(BTCUSDT, ClientOrderId(coid))).status.value
        if venue_state in ("FILLED", "CANCELED", "EXPIRED", "REJECTED"):
            assert states[coid].is_terminal, f"{coid}: venue {venue_state}, ledger {states[coid]}"


# -- the happy path ------------------------------------------------------------------------------


async def test_market_buy_is_reserved_submitted_acknowledged_and_filled(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock)
    await rig.execution.process([intent])

    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    assert order.filled_qty == Decimal("0.01")
    assert order.venue_order_id is not None
    await assert_invariants(db_engine, venue)


async def test_decision_trace_answers_the_five_questions_in_one_query(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock)
    await rig.execution.process([intent])

    async with db_engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM decision_trace WHERE client_order_id = :c"),
                {"c": coid_of(intent)},
            )
        ).one()
    trace = row._mapping
    assert trace["reason"] == "test buy"
    assert trace["md_ts"] == intent.md_ts
    assert trace["outcome"] == "reserved"
    assert isinstance(trace["verdicts"], list)
    assert [e["to_state"] for e in trace["events"]][:1] == ["PENDING_SUBMIT"]
    assert trace["events"][-1]["to_state"] == "FILLED"
    assert len(trace["fills"]) >= 1


async def test_the_decision_price_is_stored_and_slippage_measured_against_it(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    # the strategy host fills in the mid the strategy saw (50000.5); the market buy pays the ask
    intent = dataclasses.replace(buy(clock), decision_price=Decimal("50000.5"))
    await rig.execution.process([intent])

    async with db_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """SELECT d.decision_price, q.avg_price, q.slippage, q.slippage_bps
                    FROM decisions d JOIN execution_quality q USING (account, decision_id)
                    WHERE q.client_order_id = :c"""
                ),
                {"c": coid_of(intent)},
            )
        ).one()
    assert row.decision_price == Decimal("50000.5")
    assert row.avg_price == Decimal(50001)  # the ask
    assert row.slippage == Decimal("0.5")
    assert row.slippage_bps.quantize(Decimal("0.000001")) == Decimal("0.099999")


async def test_hold_is_recorded_with_its_reason(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    hold = Hold(
        key=DecisionKey(strategy_id=STRATEGY, symbol=BTCUSDT, interval_key="i9", side=None),
        reason="spread too wide",
        md_ts=clock(),
    )
    await rig.execution.process([hold])
    async with db_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT outcome, reason FROM decisions"))).all()
    assert rows == [("hold", "spread too wide")]


async def test_identical_holds_are_one_row_with_a_count_until_the_reason_changes(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)

    def hold(interval: str, reason: str) -> Hold:
        key = DecisionKey(strategy_id=STRATEGY, symbol=BTCUSDT, interval_key=interval, side=None)
        return Hold(key=key, reason=reason, md_ts=clock())

    for i, spread in enumerate(["5", "6", "7"]):
        await rig.execution.process([hold(f"i{i}", f"spread {spread} bps too wide")])
    await rig.execution.process([hold("i3", "no quote yet")])
    await rig.execution.process([hold("i4", "no quote yet")])
    await rig.execution.flush_holds()
    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT reason, repeats FROM decisions ORDER BY interval_key"))
        ).all()
    assert rows == [("spread 5 bps too wide", 2), ("no quote yet", 1)]


# -- exactly once --------------------------------------------------------------------------------


async def test_the_same_intent_twice_reserves_and_submits_once(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock, price="49000")  # rests: stays open, so a resend would be a duplicate
    await rig.execution.process([intent])
    await rig.execution.process([intent])
    await rig.execution.process([intent, intent])

    assert venue.all_orders().attempts[coid_of(intent)] == 1
    async with db_engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one()
        events = (await conn.execute(text("SELECT count(*) FROM order_events"))).scalar_one()
    assert n == 1
    assert events == 2  # reserved, acknowledged


async def test_a_definitive_refusal_is_rejected_and_never_resent(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    venue.reject_next_submit("Account has insufficient balance for requested action.", code=-2010)
    intent = buy(clock)
    await rig.execution.process([intent])
    clock.advance(60)
    await rig.execution.resolve_unresolved()

    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.REJECTED
    assert "insufficient balance" in (order.last_error or "")
    assert venue.all_orders().attempts[coid_of(intent)] == 0


# -- ambiguity -----------------------------------------------------------------------------------


async def test_a_timeout_after_the_venue_accepted_becomes_unknown_then_resolves_by_lookup(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    venue.fail_next_submit_after_accept()
    intent = buy(clock)
    await rig.execution.process([intent])

    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.UNKNOWN  # never terminal by waiting

    clock.advance(60)  # however long we wait, only a lookup settles it
    await rig.execution.resolve_unresolved()
    await rig.execution.sync_fills()
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_unresolved_orders_are_looked_up_side_by_side_and_all_resolve(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a takeover finds a few orders its predecessor left UNKNOWN: each lookup waits a venue
    # round trip, and they wait together rather than in a row
    rig = await make_rig(db_engine, venue, clock)
    intents = [buy(clock, interval=f"i{n}") for n in range(3)]
    for intent in intents:
        venue.fail_next_submit_after_accept()
        await rig.execution.process([intent])
    for intent in intents:
        order = await rig.ledger.orders.get(coid_of(intent))
        assert order is not None
        assert order.state is OrderState.UNKNOWN
    looking: set[str] = set()
    most = 0
    answer = asyncio.Event()
    find_order = venue.find_order

    async def slow_find_order(symbol: Symbol, coid: ClientOrderId) -> OrderReport:
        nonlocal most
        looking.add(coid)
        most = max(most, len(looking))
        await answer.wait()
        looking.discard(coid)
        return await find_order(symbol, coid)

    monkeypatch.setattr(venue, "find_order", slow_find_order)
    clock.advance(60)
    resolving = asyncio.create_task(rig.execution.resolve_unresolved())
    await eventually(lambda: len(looking) == len(intents), timeout=5)
    answer.set()
    assert await asyncio.wait_for(resolving, 5) == len(intents)
    assert most == len(intents)
    await rig.execution.sync_fills()
    for intent in intents:
        order = await rig.ledger.orders.get(coid_of(intent))
        assert order is not None
        assert order.state is OrderState.FILLED
        assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_an_order_the_venue_never_saw_is_resent_with_the_same_id_after_the_window(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    venue.fail_next_submit_before_accept()
    intent = buy(clock)
    await rig.execution.process([intent])
    assert (await rig.ledger.orders.get(coid_of(intent))).state is OrderState.UNKNOWN  # type: ignore[union-attr]

    await rig.execution.resolve_unresolved()  # inside the consistency window: only looks
    assert venue.all_orders().attempts[coid_of(intent)] == 0

    clock.advance(5)
    await rig.execution.resolve_unresolved()
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_an_unseen_order_is_not_resent_while_its_first_request_may_still_be_accepted(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    # Binance accepts a request up to recvWindow after it was signed: a submit that timed out
    # may still land then, and a resend before that would make two orders of one id
    rig = await make_rig(db_engine, venue, clock, late_accept=timedelta(seconds=10))
    venue.fail_next_submit_before_accept()
    intent = buy(clock)
    await rig.execution.process([intent])
    clock.advance(5)  # past the consistency window, inside late_accept
    await rig.execution.resolve_unresolved()
    assert venue.all_orders().attempts[coid_of(intent)] == 0
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.UNKNOWN

    clock.advance(6)
    await rig.execution.resolve_unresolved()
    assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_a_taken_over_order_waits_late_accept_from_the_takeover_before_a_resend(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    # the dead process may have sent it at any moment before it died, recorded or not
    intent = await crashed_after_reserve(db_engine, venue, clock)
    clock.advance(5)  # past the lease TTL and the consistency window since the reservation
    second = await make_rig(db_engine, venue, clock, late_accept=timedelta(seconds=10))
    await converge(second)
    assert venue.all_orders().attempts[coid_of(intent)] == 0

    clock.advance(11)  # late_accept after the takeover, inside the intent's 30 s
    await second.execution.resolve_unresolved()
    order = await second.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_an_unseen_order_past_its_ttl_expires_instead_of_being_resent(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    venue.fail_next_submit_before_accept()
    intent = buy(clock)
    await rig.execution.process([intent])

    clock.advance(3600)
    await rig.execution.resolve_unresolved()
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.EXPIRED
    assert "not resent" in (order.last_error or "")
    assert venue.all_orders().attempts[coid_of(intent)] == 0


# -- controls at the boundary --------------------------------------------------------------------


async def test_a_halt_committed_before_the_reserve_blocks_the_order(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    await rig.ledger.controls.set(
        ControlScope.ACCOUNT, ACCOUNT, ControlKind.HALT, reason="test", set_by="test"
    )
    intent = buy(clock)
    await rig.execution.process([intent])
    assert await rig.ledger.orders.get(coid_of(intent)) is None
    assert venue.all_orders().attempts[coid_of(intent)] == 0
    async with db_engine.connect() as conn:
        outcome = (await conn.execute(text("SELECT outcome FROM decisions"))).scalar_one()
    assert outcome == "denied"


# -- restarts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point",
    [CrashPoint.AFTER_RESERVE, CrashPoint.AFTER_SUBMIT_BEFORE_ACK],
)
async def test_a_crash_in_the_submit_path_converges_after_restart(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock, point: CrashPoint
) -> None:
    first = await make_rig(db_engine, venue, clock, CrashPoints(point.value, mode="raise"))
    intent = buy(clock)
    with pytest.raises(SimulatedCrash):
        await first.execution.process([intent])
    # The first engine is abandoned here: its lease expires, a new one takes over.
    clock.advance(60)
    second = await make_rig(db_engine, venue, clock)
    await converge(second)

    order = await second.ledger.orders.get(coid_of(intent))
    assert order is not None
    if point is CrashPoint.AFTER_RESERVE:
        # never sent, and its TTL has passed while the engine was down
        assert order.state is OrderState.EXPIRED
        assert venue.all_orders().attempts[coid_of(intent)] == 0
    else:
        assert order.state is OrderState.FILLED
        assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_a_crash_right_after_reserve_resubmits_while_the_intent_is_valid(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    intent = await crashed_after_reserve(db_engine, venue, clock)
    clock.advance(5)  # past the lease TTL and the consistency window, inside the 30 s intent TTL
    second = await make_rig(db_engine, venue, clock)
    await converge(second)
    order = await second.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    assert venue.all_orders().attempts[coid_of(intent)] == 1
    await assert_invariants(db_engine, venue)


async def test_a_crash_between_a_fill_and_its_commit_is_repaired_from_the_venue_trades(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    first = await make_rig(
        db_engine,
        venue,
        clock,
        CrashPoints(CrashPoint.AFTER_FILL_BEFORE_COMMIT.value, mode="raise"),
    )
    stream = venue.user_stream()
    intent = buy(clock, price="49990")  # rests below the ask
    await first.execution.process([intent])
    venue.set_quote(quote(clock, "49980", "49985"))  # the market comes down through our bid
    events = stream.drain()
    assert any(isinstance(e, FillReport) or getattr(e, "fills", ()) for e in events)
    with pytest.raises(SimulatedCrash):
        await apply_all(first, events)
    await stream.aclose()

    clock.advance(60)
    second = await make_rig(db_engine, venue, clock)
    await converge(second)
    order = await second.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.state is OrderState.FILLED
    await assert_invariants(db_engine, venue)


async def test_fills_arriving_twice_and_before_the_ack_are_recorded_once(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    stream = venue.user_stream()
    intent = buy(clock)
    await rig.execution.process([intent])
    events = stream.drain()
    assert events
    for event in events + events[::-1]:
        await rig.fills.apply(event)
    await stream.aclose()
    await assert_invariants(db_engine, venue)


# -- the venue's grid ----------------------------------------------------------------------------


async def test_quantity_and_price_are_rounded_to_the_venue_grid_never_beyond_the_intent(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock, qty="0.0123456789", price="49000.0199")
    await rig.execution.process([intent])
    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    assert order.requested_qty == Decimal("0.01234")  # step 0.00001, rounded down
    assert order.limit_price == Decimal("49000.01")  # tick 0.01, a buy rounds down
    async with db_engine.connect() as conn:
        verdicts = (await conn.execute(text("SELECT verdicts FROM decisions"))).scalar_one()
    assert {"check": "venue_filters", "result": "pass"}.items() <= verdicts[-1].items()


async def test_an_order_below_the_venue_minimum_is_denied_with_the_filter_named(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    rig = await make_rig(db_engine, venue, clock)
    intent = buy(clock, qty="0.00001", price="49000")  # notional 0.49 < min notional 5
    await rig.execution.process([intent])
    assert await rig.ledger.orders.get(coid_of(intent)) is None
    assert venue.all_orders().attempts[coid_of(intent)] == 0
    async with db_engine.connect() as conn:
        outcome, verdicts = (
            await conn.execute(text("SELECT outcome, verdicts FROM decisions"))
        ).one()
    assert outcome == "denied"
    failed = [v for v in verdicts if v["result"] == "reject"]
    assert [v["check"] for v in failed] == ["venue_filters"]
    assert "min_notional" in failed[0]["message"]


async def test_a_fill_that_raced_a_cancel_is_fetched_by_the_next_engine(
    db_engine: AsyncEngine, venue: PaperVenue, clock: Clock
) -> None:
    first = await make_rig(db_engine, venue, clock)
    intent = buy(clock, qty="0.5", price="49990")  # rests below the ask
    await first.execution.process([intent])
    coid = coid_of(intent)
    venue.drop_stream_events(True)  # the fill report is lost...
    venue.set_quote(quote(clock, "49980", "49985", size="0.2"))  # ...of a partial fill
    cancel = await venue.cancel(BTCUSDT, coid)
    assert cancel.filled_quantity == Decimal("0.2")
    # The cancel's answer is recorded without the fills it implies (they were never fetched:
    # the process died, or the venue refused the trades query, before it could).
    await first.ledger.orders.apply_report(dataclasses.replace(cancel, fills=()), cause="cancel")
    order = await first.ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.CANCELED
    assert order.filled_qty == 0
    # A later trade is recorded, so the lost one is older than the ledger's newest trade and
    # "trades since the newest" can never bring it back: only a lookup by order can.
    venue.drop_stream_events(False)
    venue.set_quote(quote(clock, "49980", "49985", size="1"))
    later = buy(clock, qty="0.01", interval="i2")
    await first.execution.process([later])
    newest = (await first.ledger.fills.last_trade_ids())[BTCUSDT]
    lost = [f for f in venue.all_fills() if f.client_order_id == coid]
    assert lost
    assert all(int(newest) > int(f.trade_id) for f in lost)

    clock.advance(60)
    second = await make_rig(db_engine, venue, clock)
    await converge(second)
    order = await second.ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.CANCELED
    assert order.filled_qty == Decimal("0.2")
    await assert_invariants(db_engine, venue)
