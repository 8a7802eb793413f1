"""The ledger against a real Postgres: reservation, fencing, controls, state, fills, views."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.risk import Verdict
from engine.domain.types import (
    AccountId,
    Asset,
    ClientOrderId,
    ControlKind,
    ControlScope,
    DecisionId,
    DecisionOutcome,
    Liquidity,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
    VerdictResult,
)
from engine.exceptions import DatabaseUnavailable, LeaseLost, LedgerError, StateConflict
from engine.ledger.controls import CONTROLS_LOCK_KEY
from engine.ledger.db import asyncpg_connect_kwargs, make_engine
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus
from engine.ledger.statements import Statement
from engine.venues.base import BalanceReport, FillReport, OrderReport
from tests.helpers import eventually

ACCOUNT = AccountId("acct-1")
VENUE = VenueName("binance")
HOLDER = "engine-a"
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(db_engine: AsyncEngine, clock: Clock) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=clock)


@pytest.fixture
async def epoch(ledger: Ledger) -> int:
    got = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert got is not None
    return got


def decision(
    n: int = 1,
    *,
    strategy: str = "momo",
    symbol: str = "BTCUSDT",
    side: Side | None = Side.BUY,
    intent: str = "buy",
    outcome: DecisionOutcome = DecisionOutcome.RESERVED,
) -> DecisionRecord:
    return DecisionRecord(
        decision_id=DecisionId(f"dec-{strategy}-{symbol}-{n}"),
        strategy_id=StrategyId(strategy),
        account=ACCOUNT,
        symbol=Symbol(symbol),
        intent=intent,
        side=side,
        quantity=Decimal("0.5") if side else None,
        limit_price=Decimal("30000.10") if side else None,
        reason="fast MA crossed slow MA",
        md_ts=T0 - timedelta(milliseconds=250),
        decided_at=T0 - timedelta(milliseconds=5),
        interval_key="2026-11-22T10:00",
        sequence=n,
        verdicts=(
            Verdict(
                check="max_position",
                result=VerdictResult.PASS,
                limit="2",
                observed="0.5",
            ),
        ),
        outcome=outcome,
    )


async def advisory_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of this test's database waiting for an advisory lock (the controls lock)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE d.datname = current_database() AND l.locktype = 'advisory'"
            " AND NOT l.granted"
        )
    )


def reservation(
    n: int = 1,
    *,
    qty: str = "0.5",
    **kwargs: Any,
) -> Reservation:
    d = decision(n, **kwargs)
    return Reservation(
        decision=d,
        client_order_id=ClientOrderId(f"tc-{d.strategy_id}-{d.symbol}-{n}"),
        venue=VENUE,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=Decimal(qty),
        limit_price=Decimal("30000.10"),
        expires_at=T0 + timedelta(seconds=30),
    )


def fill(
    coid: str | None,
    trade_id: str,
    qty: str,
    *,
    price: str = "30000",
    side: Side = Side.BUY,
    symbol: str = "BTCUSDT",
    venue_ts: datetime = T0 + timedelta(seconds=1),
) -> FillReport:
    return FillReport(
        venue=VENUE,
        symbol=Symbol(symbol),
        trade_id=TradeId(trade_id),
        client_order_id=None if coid is None else ClientOrderId(coid),
        venue_order_id=VenueOrderId("v-1"),
        side=side,
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.01"),
        fee_asset=Asset("USDT"),
        liquidity=Liquidity.MAKER,
        venue_ts=venue_ts,
        received_at=venue_ts + timedelta(milliseconds=3),
    )


def report(
    coid: str,
    status: VenueOrderStatus,
    *,
    filled: str = "0",
    qty: str = "0.5",
    fills: tuple[FillReport, ...] = (),
    reason: str | None = None,
) -> OrderReport:
    return OrderReport(
        venue=VENUE,
        symbol=Symbol("BTCUSDT"),
        client_order_id=ClientOrderId(coid),
        venue_order_id=VenueOrderId("v-1"),
        side=Side.BUY,
        type=OrderType.LIMIT,
        status=status,
        quantity=Decimal(qty),
        limit_price=Decimal("30000.10"),
        filled_quantity=Decimal(filled),
        cumulative_quote=None,
        venue_ts=T0 + timedelta(milliseconds=900),
        received_at=T0 + timedelta(milliseconds=905),
        fills=fills,
        reason=reason,
    )


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def reserve_one(ledger: Ledger, epoch: int, r: Reservation | None = None) -> ClientOrderId:
    r = r or reservation()
    [result] = await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)
    assert result.status is ReserveStatus.RESERVED
    return r.client_order_id


# -- reservation --------------------------------------------------------------------------------


async def test_reserving_the_same_decision_twice_yields_one_order_and_one_event(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    r = reservation()
    [first] = await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)
    [second] = await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)

    assert first.status is ReserveStatus.RESERVED
    assert second.status is ReserveStatus.EXISTING
    assert first.order is not None
    assert second.order is not None
    assert second.order == first.order
    assert second.order.state is OrderState.PENDING_SUBMIT
    assert second.order.lease_epoch == epoch
    assert await scalar(db_engine, "SELECT count(*) FROM orders") == 1
    assert await scalar(db_engine, "SELECT count(*) FROM decisions") == 1
    assert await scalar(db_engine, "SELECT count(*) FROM order_events") == 1
    assert (
        await scalar(db_engine, "SELECT outcome FROM decisions") == DecisionOutcome.RESERVED.value
    )


async def test_a_batch_is_reserved_in_one_go_and_reports_each_order(
    ledger: Ledger, epoch: int
) -> None:
    batch = [reservation(1), reservation(2, side=Side.SELL, intent="sell")]
    results = await ledger.orders.reserve(batch, holder=HOLDER, epoch=epoch)
    assert [r.status for r in results] == [ReserveStatus.RESERVED] * 2
    stored = [await ledger.orders.get(r.client_order_id) for r in batch]
    assert [o.side for o in stored if o] == [Side.BUY, Side.SELL]
    assert [o for o in stored] == [r.order for r in results]


async def test_a_batch_no_control_covers_is_reserved_by_one_statement_outside_a_transaction(
    ledger: Ledger, epoch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One round trip from a decision to its reservation: no BEGIN, fence or COMMIT of its own
    (the lock, the fence and the controls read are in the statement: reservation_gate)."""
    ran: list[tuple[str, bool]] = []
    original = Statement.run

    async def run(self: Statement, db: Any, params: Any = None) -> Any:
        ran.append((self.sql, db.is_in_transaction()))
        return await original(self, db, params)

    monkeypatch.setattr(Statement, "run", run)
    results = await ledger.orders.reserve(
        [reservation(1), reservation(2)], holder=HOLDER, epoch=epoch
    )
    assert [r.status for r in results] == [ReserveStatus.RESERVED] * 2
    [(sql, in_transaction)] = ran
    assert "reservation_gate(" in sql
    assert not in_transaction


async def test_reserve_with_a_stale_epoch_raises_lease_lost_and_writes_nothing(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    with pytest.raises(LeaseLost, match="acct-1"):
        await ledger.orders.reserve([reservation()], holder=HOLDER, epoch=epoch + 1)
    with pytest.raises(LeaseLost):
        await ledger.orders.reserve([reservation()], holder="someone-else", epoch=epoch)
    for table in ("decisions", "orders", "order_events"):
        assert await scalar(db_engine, f"SELECT count(*) FROM {table}") == 0


async def test_reserve_after_the_lease_expired_raises_lease_lost(
    ledger: Ledger, epoch: int, clock: Clock
) -> None:
    clock.advance(seconds=31)
    with pytest.raises(LeaseLost):
        await ledger.orders.reserve([reservation()], holder=HOLDER, epoch=epoch)


# -- lease ----------------------------------------------------------------------------------------


async def test_lease_is_refused_while_held_and_taken_over_with_a_new_epoch_after_expiry(
    ledger: Ledger, clock: Clock
) -> None:
    ttl = timedelta(seconds=10)
    first = await ledger.leases.acquire("a", ttl)
    assert first == 1
    assert await ledger.leases.acquire("b", ttl) is None

    clock.advance(seconds=11)
    second = await ledger.leases.acquire("b", ttl)
    assert second == 2
    with pytest.raises(LeaseLost):
        await ledger.leases.renew("a", 1, ttl)
    await ledger.leases.renew("b", 2, ttl)

    await ledger.leases.release("b", 2)
    assert await ledger.leases.acquire("a", ttl) == 3


async def test_renewing_keeps_the_lease_past_its_first_expiry(ledger: Ledger, clock: Clock) -> None:
    ttl = timedelta(seconds=10)
    epoch = await ledger.leases.acquire("a", ttl)
    assert epoch is not None
    clock.advance(seconds=8)
    await ledger.leases.renew("a", epoch, ttl)
    clock.advance(seconds=8)
    assert await ledger.leases.acquire("b", ttl) is None
    [result] = await ledger.orders.reserve([reservation()], holder="a", epoch=epoch)
    assert result.status is ReserveStatus.RESERVED


# -- controls -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "target", "kind"),
    [
        (ControlScope.GLOBAL, "*", ControlKind.HALT),
        (ControlScope.ACCOUNT, "acct-1", ControlKind.PAUSE),
        (ControlScope.STRATEGY, "momo", ControlKind.PAUSE),
        (ControlScope.SYMBOL, "BTCUSDT", ControlKind.HALT),
    ],
)
async def test_an_active_halt_or_pause_covering_the_order_blocks_it_and_records_a_denial(
    ledger: Ledger,
    epoch: int,
    db_engine: AsyncEngine,
    scope: ControlScope,
    target: str,
    kind: ControlKind,
) -> None:
    await ledger.controls.set(scope, target, kind, reason="ops drill", set_by="alice")
    [result] = await ledger.orders.reserve([reservation()], holder=HOLDER, epoch=epoch)

    assert result.status is ReserveStatus.BLOCKED
    assert result.order is None
    assert any("ops drill" in b and kind.value in b for b in result.blocked_by)
    assert await scalar(db_engine, "SELECT count(*) FROM orders") == 0
    async with db_engine.connect() as conn:
        outcome, verdicts = (
            await conn.execute(text("SELECT outcome, verdicts FROM decisions"))
        ).one()
    assert outcome == "denied"
    control_verdicts = [v for v in verdicts if v["check"] == "control"]
    assert len(control_verdicts) == 1
    assert control_verdicts[0]["result"] == "reject"
    assert "ops drill" in control_verdicts[0]["message"]
    assert [v["check"] for v in verdicts] == ["max_position", "control"]


async def test_controls_on_other_strategies_and_symbols_do_not_block(
    ledger: Ledger, epoch: int
) -> None:
    await ledger.controls.set(
        ControlScope.STRATEGY, "other", ControlKind.PAUSE, reason="x", set_by="a"
    )
    await ledger.controls.set(
        ControlScope.SYMBOL, "ETHUSDT", ControlKind.HALT, reason="x", set_by="a"
    )
    await ledger.controls.set(
        ControlScope.ACCOUNT, "acct-2", ControlKind.HALT, reason="x", set_by="a"
    )
    results = await ledger.orders.reserve(
        [reservation(1), reservation(2, strategy="other"), reservation(3, symbol="ETHUSDT")],
        holder=HOLDER,
        epoch=epoch,
    )
    assert [r.status for r in results] == [
        ReserveStatus.RESERVED,
        ReserveStatus.BLOCKED,
        ReserveStatus.BLOCKED,
    ]


async def test_a_cleared_control_no_longer_blocks(ledger: Ledger, epoch: int) -> None:
    await ledger.controls.set(ControlScope.GLOBAL, "*", ControlKind.HALT, reason="x", set_by="a")
    assert await ledger.controls.clear(ControlScope.GLOBAL, "*", ControlKind.HALT, cleared_by="b")
    assert not await ledger.controls.clear(
        ControlScope.GLOBAL, "*", ControlKind.HALT, cleared_by="b"
    )
    assert await ledger.controls.active() == []
    [result] = await ledger.orders.reserve([reservation()], holder=HOLDER, epoch=epoch)
    assert result.status is ReserveStatus.RESERVED


async def test_setting_an_active_control_again_returns_the_same_one(ledger: Ledger) -> None:
    first = await ledger.controls.set(
        ControlScope.STRATEGY, "momo", ControlKind.PAUSE, reason="first", set_by="a"
    )
    again = await ledger.controls.set(
        ControlScope.STRATEGY, "momo", ControlKind.PAUSE, reason="second", set_by="b"
    )
    assert again == first
    assert again.reason == "first"
    assert await ledger.controls.active() == [first]


async def test_an_already_reserved_order_is_reported_existing_even_under_a_halt(
    ledger: Ledger, epoch: int
) -> None:
    r = reservation()
    await reserve_one(ledger, epoch, r)
    await ledger.controls.set(ControlScope.GLOBAL, "*", ControlKind.HALT, reason="x", set_by="a")
    [result] = await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)
    assert result.status is ReserveStatus.EXISTING
    assert result.order is not None
    assert result.order.client_order_id == r.client_order_id


async def test_reduce_only_allows_shrinking_the_position_but_not_growing_or_flipping_it(
    ledger: Ledger, epoch: int
) -> None:
    buy = await reserve_one(ledger, epoch, reservation(1, qty="1"))
    await ledger.fills.append([fill(buy, "100", "1")])
    assert await ledger.risk_inputs.account_position(Symbol("BTCUSDT")) == Decimal(1)
    await ledger.controls.set(
        ControlScope.SYMBOL, "BTCUSDT", ControlKind.REDUCE_ONLY, reason="risk off", set_by="ops"
    )

    results = await ledger.orders.reserve(
        [
            reservation(2, qty="0.25"),  # buy: grows
            reservation(3, qty="0.6", side=Side.SELL, intent="sell"),  # shrinks
            reservation(4, qty="0.6", side=Side.SELL, intent="sell"),  # 1.2 working: flips
            reservation(5, qty="0.4", side=Side.SELL, intent="sell"),  # 1.0: flat is fine
        ],
        holder=HOLDER,
        epoch=epoch,
    )
    assert [r.status for r in results] == [
        ReserveStatus.BLOCKED,
        ReserveStatus.RESERVED,
        ReserveStatus.BLOCKED,
        ReserveStatus.RESERVED,
    ]
    assert "risk off" in results[0].blocked_by[0]

    # the working sells count: another sell now would flip the position
    [later] = await ledger.orders.reserve(
        [reservation(6, qty="0.1", side=Side.SELL, intent="sell")], holder=HOLDER, epoch=epoch
    )
    assert later.status is ReserveStatus.BLOCKED


async def test_set_control_waits_for_an_in_flight_reservation_to_commit(
    ledger: Ledger, database_url: URL
) -> None:
    """The lock protocol: a reservation holds the controls lock shared until it commits."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", CONTROLS_LOCK_KEY)
        task = asyncio.create_task(
            ledger.controls.set(ControlScope.GLOBAL, "*", ControlKind.HALT, reason="x", set_by="a")
        )

        await eventually(lambda: advisory_waiters(conn), message="set_control never waited")
        assert not task.done()
        await tx.commit()
        control = await task
        assert control.kind is ControlKind.HALT
    finally:
        await conn.close()


# -- state transitions ------------------------------------------------------------------------


async def test_ack_attaches_the_venue_order_and_moves_to_open(
    ledger: Ledger, epoch: int, clock: Clock
) -> None:
    coid = await reserve_one(ledger, epoch)
    sent = clock()
    clock.advance(seconds=1)
    order = await ledger.orders.record_ack(
        coid, report(coid, VenueOrderStatus.NEW), submitted_at=sent
    )
    assert order.state is OrderState.OPEN
    assert order.venue_order_id == "v-1"
    assert order.submitted_at == sent
    assert order.acked_at == clock()
    assert order.venue_ts == T0 + timedelta(milliseconds=900)
    assert await ledger.orders.get(coid) == order


async def test_ack_with_fills_records_them_and_derives_the_state(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    fills = (fill(coid, "1", "0.2", price="100"), fill(coid, "2", "0.3", price="200"))
    order = await ledger.orders.record_ack(
        coid, report(coid, VenueOrderStatus.FILLED, filled="0.5", fills=fills), submitted_at=T0
    )
    assert order.state is OrderState.FILLED
    assert order.filled_qty == Decimal("0.5")
    assert order.avg_price == Decimal(160)
    assert order.remaining_qty == 0


async def test_an_ambiguous_submit_marks_unknown_and_the_lookup_resolves_it(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    coid = await reserve_one(ledger, epoch)
    unknown = await ledger.orders.mark_unknown(coid, "read timeout after send", submitted_at=T0)
    assert unknown.state is OrderState.UNKNOWN
    assert unknown.last_error == "read timeout after send"

    resolved = await ledger.orders.apply_report(
        report(
            coid, VenueOrderStatus.PARTIALLY_FILLED, filled="0.1", fills=(fill(coid, "7", "0.1"),)
        ),
        cause="lookup",
    )
    assert resolved is not None
    assert resolved.state is OrderState.PARTIALLY_FILLED
    assert resolved.filled_qty == Decimal("0.1")
    async with db_engine.connect() as conn:
        events = (
            await conn.execute(
                text("SELECT from_state, to_state, cause FROM order_events ORDER BY id")
            )
        ).all()
    assert [tuple(e) for e in events] == [
        (None, "PENDING_SUBMIT", "reserved"),
        ("PENDING_SUBMIT", "UNKNOWN", "submit_ambiguous"),
        ("UNKNOWN", "PARTIALLY_FILLED", "lookup"),
    ]


async def test_mark_unknown_after_the_stream_already_acked_keeps_the_better_state(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.apply_report(report(coid, VenueOrderStatus.NEW), cause="stream")
    order = await ledger.orders.mark_unknown(coid, "timeout", submitted_at=T0)
    assert order.state is OrderState.OPEN
    assert order.last_error == "timeout"


async def test_a_disallowed_transition_raises_state_conflict_naming_both_states(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.mark_rejected(coid, "-2010 insufficient balance", submitted_at=T0)
    with pytest.raises(StateConflict, match=r"REJECTED.*PENDING_CANCEL"):
        await ledger.orders.request_cancel(coid, "operator")


async def test_moving_to_the_current_state_is_a_no_op_without_an_event(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    coid = await reserve_one(ledger, epoch)
    first = await ledger.orders.request_cancel(coid, "halt")
    again = await ledger.orders.request_cancel(coid, "halt")
    assert first.state is again.state is OrderState.PENDING_CANCEL
    assert await scalar(db_engine, "SELECT count(*) FROM order_events") == 2


async def test_transition_of_an_unknown_order_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the ledger"):
        await ledger.orders.expire(ClientOrderId("nope"), "ttl")


async def test_a_stale_report_never_moves_an_order_backwards(ledger: Ledger, epoch: int) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.fills.append([fill(coid, "1", "0.1")])
    order = await ledger.orders.apply_report(report(coid, VenueOrderStatus.NEW), cause="stream")
    assert order is not None
    assert order.state is OrderState.PARTIALLY_FILLED
    assert order.venue_order_id == "v-1"


async def test_a_report_for_an_order_the_ledger_does_not_know_returns_none_but_keeps_fills(
    ledger: Ledger, db_engine: AsyncEngine
) -> None:
    stray = report(
        "manual-1", VenueOrderStatus.FILLED, filled="0.1", fills=(fill(None, "9", "0.1"),)
    )
    assert await ledger.orders.apply_report(stray, cause="stream") is None
    assert await scalar(db_engine, "SELECT client_order_id FROM fills") == "manual-1"


async def test_expire_records_the_reason(ledger: Ledger, epoch: int) -> None:
    coid = await reserve_one(ledger, epoch)
    order = await ledger.orders.expire(coid, "not found on the venue after the TTL")
    assert order.state is OrderState.EXPIRED
    assert order.last_error == "not found on the venue after the TTL"
    assert await ledger.orders.non_terminal() == []


# -- fills ------------------------------------------------------------------------------------


async def test_fills_are_idempotent_and_drive_the_order_state(ledger: Ledger, epoch: int) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    first = fill(coid, "1", "0.2", price="100")

    assert await ledger.fills.append([first]) == [first]
    assert await ledger.fills.append([first]) == []
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.PARTIALLY_FILLED
    assert order.filled_qty == Decimal("0.2")

    second = fill(coid, "2", "0.3", price="200")
    assert await ledger.fills.append([first, second]) == [second]
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.FILLED
    assert order.filled_qty == Decimal("0.5")
    assert order.avg_price == Decimal(160)


async def test_a_fill_already_recorded_is_not_written_again_nor_waits_for_its_order(
    ledger: Ledger, epoch: int, database_url: URL
) -> None:
    # the stream, a lookup and every reconciliation's look back bring the same trades again:
    # appending one the ledger holds must not lock its order (the execution path may hold it)
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    first = fill(coid, "1", "0.2", price="100")
    assert await ledger.fills.append([first]) == [first]
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM orders WHERE client_order_id = $1 FOR UPDATE", coid)
        async with asyncio.timeout(5):
            assert await ledger.fills.append([first]) == []
        # a new fill of the same order does wait for the lock, and lands once it is let go
        second = fill(coid, "2", "0.3", price="200")
        appending = asyncio.create_task(ledger.fills.append([first, second]))

        async def waits_for_the_lock() -> bool:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(waiting)

        await eventually(waits_for_the_lock, timeout=5, interval=0.02)
        assert not appending.done()
        await tx.rollback()
        assert await asyncio.wait_for(appending, 5) == [second]
    finally:
        await conn.close()
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.FILLED


async def test_a_fill_before_the_ack_moves_a_pending_submit_to_partially_filled(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.fills.append([fill(coid, "1", "0.1")])
    order = await ledger.orders.record_ack(
        coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0
    )
    assert order.state is OrderState.PARTIALLY_FILLED
    assert order.acked_at is not None


async def test_a_late_fill_on_a_canceled_order_is_recorded_and_the_order_stays_canceled(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    await ledger.orders.request_cancel(coid, "operator")
    canceled = await ledger.orders.apply_report(
        report(coid, VenueOrderStatus.CANCELED), cause="cancel"
    )
    assert canceled is not None
    assert canceled.state is OrderState.CANCELED

    late = fill(coid, "1", "0.2")
    assert await ledger.fills.append([late]) == [late]
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.CANCELED
    assert order.filled_qty == Decimal("0.2")


async def test_a_fill_during_a_pending_cancel_keeps_the_cancel_in_flight(
    ledger: Ledger, epoch: int
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    await ledger.orders.request_cancel(coid, "operator")
    await ledger.fills.append([fill(coid, "1", "0.2")])
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.PENDING_CANCEL
    await ledger.fills.append([fill(coid, "2", "0.3")])
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state is OrderState.FILLED


async def test_a_fill_of_an_order_unknown_to_the_ledger_is_still_recorded(
    ledger: Ledger, db_engine: AsyncEngine
) -> None:
    stray = fill("someone-elses", "1", "0.2", side=Side.SELL)
    assert await ledger.fills.append([stray]) == [stray]
    assert await scalar(db_engine, "SELECT count(*) FROM fills") == 1
    assert await ledger.risk_inputs.account_position(Symbol("BTCUSDT")) == Decimal("-0.2")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE fills SET qty = 1",
        "DELETE FROM fills",
        "TRUNCATE fills",
        "UPDATE order_events SET cause = 'rewritten'",
        "DELETE FROM order_events",
        "TRUNCATE order_events CASCADE",
    ],
)
async def test_fills_and_order_events_refuse_to_be_rewritten(
    ledger: Ledger, epoch: int, database_url: URL, statement: str
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.fills.append([fill(coid, "1", "0.2")])
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM fills") == 1
        assert await conn.fetchval("SELECT count(*) FROM order_events") == 2
    finally:
        await conn.close()


async def test_last_trade_ids_are_the_newest_fill_per_symbol(ledger: Ledger) -> None:
    same_ms = T0 + timedelta(seconds=5)
    await ledger.fills.append(
        [
            fill(None, "9", "1", venue_ts=same_ms),
            fill(None, "10", "1", venue_ts=same_ms),  # numeric order, not text order
            fill(None, "8", "1", venue_ts=T0),
            fill(None, "abc-1", "1", symbol="KXBTC", venue_ts=T0),
            fill(None, "abc-0", "1", symbol="KXBTC", venue_ts=same_ms),
        ]
    )
    assert await ledger.fills.last_trade_ids() == {"BTCUSDT": "10", "KXBTC": "abc-0"}


async def test_positions_come_from_fills_per_strategy_and_for_the_account(
    ledger: Ledger, epoch: int
) -> None:
    a = await reserve_one(ledger, epoch, reservation(1, qty="1"))
    b = await reserve_one(
        ledger, epoch, reservation(2, strategy="mr", side=Side.SELL, intent="sell")
    )
    await ledger.fills.append(
        [
            fill(a, "1", "1"),
            fill(b, "2", "0.25", side=Side.SELL),
            fill(None, "3", "0.1", side=Side.SELL),  # manual trade: the account's, no strategy's
        ]
    )
    assert await ledger.risk_inputs.net_positions() == {
        ("momo", "BTCUSDT"): Decimal(1),
        ("mr", "BTCUSDT"): Decimal("-0.25"),
    }
    assert await ledger.risk_inputs.account_position(Symbol("BTCUSDT")) == Decimal("0.65")
    assert await ledger.risk_inputs.account_position(Symbol("ETHUSDT")) == 0


async def test_open_orders_filter_by_strategy(ledger: Ledger, epoch: int) -> None:
    a = await reserve_one(ledger, epoch, reservation(1))
    b = await reserve_one(ledger, epoch, reservation(2, strategy="mr"))
    assert [o.client_order_id for o in await ledger.orders.open()] == [a, b]
    assert [o.client_order_id for o in await ledger.orders.open(StrategyId("mr"))] == [b]


# -- views ------------------------------------------------------------------------------------


async def test_decision_trace_shows_decision_verdicts_events_and_fills_in_one_query(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    await ledger.fills.append([fill(coid, "1", "0.2", price="100")])
    await ledger.fills.append([fill(coid, "2", "0.3")])
    await ledger.decisions.record(
        decision(9, side=None, intent="hold", outcome=DecisionOutcome.HOLD)
    )

    async with db_engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    text("SELECT * FROM decision_trace WHERE client_order_id = :c"), {"c": coid}
                )
            )
            .one()
            ._mapping
        )
        hold = (
            (await conn.execute(text("SELECT * FROM decision_trace WHERE intent = 'hold'")))
            .one()
            ._mapping
        )
    assert row["reason"] == "fast MA crossed slow MA"
    assert row["md_ts"] == T0 - timedelta(milliseconds=250)
    assert [v["check"] for v in row["verdicts"]] == ["max_position"]
    assert row["verdicts"][0]["observed"] == "0.5"
    assert [(e["from_state"], e["to_state"]) for e in row["events"]] == [
        (None, "PENDING_SUBMIT"),
        ("PENDING_SUBMIT", "OPEN"),
        ("OPEN", "PARTIALLY_FILLED"),
        ("PARTIALLY_FILLED", "FILLED"),
    ]
    assert [(f["trade_id"], f["qty"], f["price"]) for f in row["fills"]] == [
        ("1", "0.2", "100"),
        ("2", "0.3", "30000"),
    ]
    assert row["state"] == "FILLED"
    assert hold["client_order_id"] is None
    assert hold["events"] == []
    assert hold["fills"] == []


async def test_order_status_positions_and_execution_quality_views(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine, clock: Clock
) -> None:
    coid = await reserve_one(ledger, epoch)
    clock.advance(seconds=2)
    await ledger.orders.record_ack(
        coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0 + timedelta(seconds=1)
    )
    await ledger.fills.append([fill(coid, "1", "0.2", price="30000")])
    async with db_engine.connect() as conn:
        status = (
            (
                await conn.execute(
                    text("SELECT * FROM order_status WHERE client_order_id = :c"), {"c": coid}
                )
            )
            .one()
            ._mapping
        )
        position = (await conn.execute(text("SELECT * FROM positions"))).one()._mapping
        quality = (await conn.execute(text("SELECT * FROM execution_quality"))).one()._mapping
    assert (status["filled_qty"], status["remaining_qty"], status["fill_count"]) == (
        Decimal("0.2"),
        Decimal("0.3"),
        1,
    )
    assert status["fees"] == Decimal("0.01")
    assert (position["strategy_id"], position["net_qty"], position["buy_notional"]) == (
        "momo",
        Decimal("0.2"),
        Decimal("6000.0"),
    )
    assert quality["submit_to_ack_s"] == Decimal(1)
    assert quality["fill_ratio"] == Decimal("0.4")
    assert quality["price_improvement"] == Decimal("0.10")


# -- incidents and balances -------------------------------------------------------------------


async def test_an_incident_is_opened_once_per_dedupe_key_until_resolved(ledger: Ledger) -> None:
    args = {
        "kind": "unknown_order",
        "scope": "account:acct-1",
        "severity": "critical",
        "message": "venue order tc-x is not in the ledger: inspect it and cancel or adopt it",
        "details": {"client_order_id": "tc-x", "qty": "0.5"},
        "dedupe_key": "unknown_order:tc-x",
    }
    first = await ledger.incidents.open(**args)
    again = await ledger.incidents.open(**{**args, "message": "changed"})
    assert again == first
    assert first.details == {"client_order_id": "tc-x", "qty": "0.5"}
    assert await ledger.incidents.read() == [first]

    assert await ledger.incidents.resolve(first.id, "adopted")
    assert not await ledger.incidents.resolve(first.id, "twice")
    assert await ledger.incidents.read() == []
    reopened = await ledger.incidents.open(**args)
    assert reopened.id != first.id
    everything = await ledger.incidents.read(open_only=False)
    assert [i.id for i in everything] == [first.id, reopened.id]
    assert everything[0].resolution_note == "adopted"


async def test_latest_balances_are_the_newest_report_per_asset(ledger: Ledger) -> None:
    def bal(asset: str, free: str, at: int) -> BalanceReport:
        return BalanceReport(
            venue=VENUE,
            asset=Asset(asset),
            free=Decimal(free),
            locked=Decimal("0.5"),
            venue_ts=None,
            received_at=T0 + timedelta(seconds=at),
        )

    await ledger.balances.record([bal("USDT", "100", 0), bal("BTC", "1", 0)])
    await ledger.balances.record([bal("USDT", "90.5", 1)])
    latest = await ledger.balances.latest()
    assert latest == {"USDT": bal("USDT", "90.5", 1), "BTC": bal("BTC", "1", 0)}


# -- failures -----------------------------------------------------------------------------------


async def test_an_unreachable_database_raises_database_unavailable_without_the_password() -> None:
    engine = make_engine("postgresql://tradectl:s3cret-pw@127.0.0.1:1/ledger")
    try:
        ledger = Ledger(engine, account=ACCOUNT, venue=VENUE)
        with pytest.raises(DatabaseUnavailable) as info:
            await ledger.orders.get(ClientOrderId("x"))
    finally:
        await engine.dispose()
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert "DATABASE_URL" in str(info.value)


async def test_a_reservation_for_another_account_is_refused(ledger: Ledger, epoch: int) -> None:
    r = reservation()
    other = replace(r, decision=replace(r.decision, account=AccountId("acct-2")))
    with pytest.raises(ValueError, match="acct-2"):
        await ledger.orders.reserve([other], holder=HOLDER, epoch=epoch)


# -- concurrent writers and the one-statement paths ------------------------------------------


async def _hold_fill_in_open_transaction(
    database_url: URL, coid: str, trade_id: str, qty: str
) -> tuple[asyncpg.Connection, Any]:
    """Another writer following the protocol (lock, insert a fill, touch the order), not yet
    committed."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    tx = conn.transaction()
    await tx.start()
    await conn.execute("SELECT 1 FROM orders WHERE client_order_id = $1 FOR UPDATE", coid)
    await conn.execute(
        """INSERT INTO fills (venue, symbol, trade_id, client_order_id, account, side, qty, price,
                              fee, venue_ts, received_at, recorded_at)
           VALUES ('binance', 'BTCUSDT', $1, $2, 'acct-1', 'BUY', $3, 30000, 0, now(), now(),
                   now())""",
        trade_id,
        coid,
        Decimal(qty),
    )
    await conn.execute("UPDATE orders SET updated_at = now() WHERE client_order_id = $1", coid)
    return conn, tx


async def _row_lock_waiters(database_url: URL) -> int:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
            )
        )
    finally:
        await conn.close()


async def test_fills_committed_by_a_concurrent_writer_are_counted_in_the_derived_state(
    ledger: Ledger, epoch: int, database_url: URL
) -> None:
    coid = await reserve_one(ledger, epoch)
    await ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
    other, tx = await _hold_fill_in_open_transaction(database_url, coid, "1", "0.2")
    try:
        task = asyncio.create_task(ledger.fills.append([fill(coid, "2", "0.3")]))
        await eventually(lambda: _row_lock_waiters(database_url), message="never waited")
        await tx.commit()
        assert [f.trade_id for f in await task] == ["2"]
    finally:
        await other.close()
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.filled_qty == Decimal("0.5")
    assert order.state is OrderState.FILLED


async def test_a_report_applied_while_another_writer_adds_fills_sees_them(
    ledger: Ledger, epoch: int, database_url: URL
) -> None:
    coid = await reserve_one(ledger, epoch)
    other, tx = await _hold_fill_in_open_transaction(database_url, coid, "1", "0.5")
    try:
        task = asyncio.create_task(
            ledger.orders.record_ack(coid, report(coid, VenueOrderStatus.NEW), submitted_at=T0)
        )
        await eventually(lambda: _row_lock_waiters(database_url), message="never waited")
        await tx.commit()
        order = await task
    finally:
        await other.close()
    assert order.state is OrderState.FILLED
    assert order.filled_qty == Decimal("0.5")
    assert order.venue_order_id == "v-1"
    assert order.acked_at is not None


def test_target_state_depends_on_the_fill_quantity_only_through_the_bucket() -> None:
    """The one-statement paths look states up by (state, bucket); pin that this is exact."""
    from engine.domain.orders import target_state
    from engine.ledger.fills import _bucket, _fill_driven_state, _fill_targets, report_targets

    quantities = [Decimal(x) for x in ("0", "0.001", "0.5", "0.999", "1", "1.5")]
    for status in VenueOrderStatus:
        table = report_targets(status)
        keys = zip(table["lk_from"], table["lk_bucket"], strict=True)
        lookup = dict(zip(keys, table["lk_to"], strict=True))
        for state in OrderState:
            for filled in quantities:
                expected = target_state(state, status, filled, Decimal(1))
                assert lookup[(state.value, _bucket(filled, Decimal(1)))] == expected.value
    table = _fill_targets()
    keys = zip(table["lk_from"], table["lk_bucket"], strict=True)
    lookup = dict(zip(keys, table["lk_to"], strict=True))
    for state in OrderState:
        for filled in quantities:
            expected = _fill_driven_state(state, filled, Decimal(1))
            assert lookup[(state.value, _bucket(filled, Decimal(1)))] == expected.value


async def test_a_control_committed_while_a_reservation_waits_blocks_that_reservation(
    ledger: Ledger, epoch: int, database_url: URL
) -> None:
    """The other half of the lock protocol: set_control holds the lock exclusively, so a
    reservation that starts meanwhile waits and then sees the new control."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CONTROLS_LOCK_KEY)
        await conn.execute(
            """INSERT INTO controls (scope, target, kind, active, reason, set_by, set_at)
               VALUES ('global', '*', 'halt', true, 'kill switch', 'ops', now())"""
        )
        task = asyncio.create_task(
            ledger.orders.reserve([reservation()], holder=HOLDER, epoch=epoch)
        )

        await eventually(
            lambda: advisory_waiters(conn), message="reserve never waited for the lock"
        )
        await tx.commit()
        [result] = await task
    finally:
        await conn.close()
    assert result.status is ReserveStatus.BLOCKED
    assert "kill switch" in result.blocked_by[0]
