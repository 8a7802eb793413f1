"""What a reservation stores is exactly what it was given: the decision and order rows travel
as one JSON parameter each (engine/ledger/decisions.py), so numbers, instants and text must
come out of ``json_to_recordset`` digit for digit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.risk import Verdict
from engine.domain.types import (
    AccountId,
    ClientOrderId,
    DecisionId,
    DecisionOutcome,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    VerdictResult,
)
from engine.ledger.ledger import Ledger
from engine.ledger.records import DecisionRecord, Reservation, ReserveStatus

ACCOUNT = AccountId("acct-1")
VENUE = VenueName("binance")
T0 = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
#: aware but not UTC: the instant is what counts
PLUS_TWO = timezone(timedelta(hours=2))
REASON = 'crossed "slow" MA \\ at 5% — ünïcode\nsecond line'


def _reservation(quantity: Decimal, limit: Decimal, decision_price: Decimal) -> Reservation:
    decision = DecisionRecord(
        decision_id=DecisionId("dec-exact-1"),
        strategy_id=StrategyId("momo"),
        account=ACCOUNT,
        symbol=Symbol("BTCUSDT"),
        intent="buy",
        side=Side.BUY,
        quantity=quantity,
        limit_price=limit,
        reason=REASON,
        md_ts=(T0 - timedelta(microseconds=7)).astimezone(PLUS_TWO),
        decided_at=T0,
        interval_key="2026-11-22T10:00",
        sequence=3,
        verdicts=(
            Verdict(
                check="max_position",
                result=VerdictResult.RESIZE,
                limit="2",
                observed='0.5 "quoted"',
                resized_qty=Decimal("0.25000"),
            ),
        ),
        outcome=DecisionOutcome.RESERVED,
        decision_price=decision_price,
        strategy_version="v1.2",
        config_hash="abc123",
        stage="live",
        capital_fraction=Decimal("0.1250"),
    )
    return Reservation(
        decision=decision,
        client_order_id=ClientOrderId("tc-exact-1"),
        venue=VENUE,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        quantity=quantity,
        limit_price=limit,
        expires_at=T0 + timedelta(seconds=30, microseconds=1),
    )


async def test_a_reservation_stores_its_numbers_instants_and_text_exactly(
    db_engine: AsyncEngine,
) -> None:
    ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=lambda: T0)
    epoch = await ledger.leases.acquire("engine-a", timedelta(seconds=30))
    assert epoch is not None
    # trailing zeros (the scale is kept), an exponent each way, and more digits than a float has
    quantity, limit, price = Decimal("0.50000"), Decimal("1E+3"), Decimal("1E-8")
    limit_long = Decimal("12345678901234567890.123456789012345678")
    r = _reservation(quantity, limit_long, price)
    [result] = await ledger.orders.reserve([r], holder="engine-a", epoch=epoch)
    assert result.status is ReserveStatus.RESERVED

    async with db_engine.connect() as conn:
        d = (
            await conn.execute(
                text(
                    "SELECT quantity::text AS q, limit_price::text AS lp, decision_price::text"
                    " AS dp, capital_fraction::text AS cf, reason, md_ts, decided_at,"
                    " sequence, verdicts, side, outcome, strategy_version, config_hash, stage"
                    " FROM decisions"
                )
            )
        ).one()
        o = (
            await conn.execute(
                text(
                    "SELECT requested_qty::text AS q, limit_price::text AS lp, expires_at,"
                    " side, type, time_in_force, decision_id, strategy_id, symbol, venue"
                    " FROM orders"
                )
            )
        ).one()
    assert (d.q, d.lp, d.dp, d.cf) == ("0.50000", format(limit_long, "f"), "0.00000001", "0.1250")
    assert (o.q, o.lp) == ("0.50000", format(limit_long, "f"))
    assert d.reason == REASON
    assert d.md_ts == T0 - timedelta(microseconds=7)
    assert d.decided_at == T0
    assert o.expires_at == T0 + timedelta(seconds=30, microseconds=1)
    assert d.sequence == 3
    assert d.verdicts == [
        {
            "check": "max_position",
            "result": "resize",
            "limit": "2",
            "observed": '0.5 "quoted"',
            "message": "",
            "resized_qty": "0.25000",
        }
    ]
    assert (d.side, d.outcome, d.strategy_version, d.config_hash, d.stage) == (
        "BUY",
        "reserved",
        "v1.2",
        "abc123",
        "live",
    )
    assert (o.side, o.type, o.time_in_force) == ("BUY", "LIMIT", "GTC")
    assert (o.decision_id, o.strategy_id, o.symbol, o.venue) == (
        "dec-exact-1",
        "momo",
        "BTCUSDT",
        "binance",
    )

    # an exponent with a positive power is stored as its plain digits
    first = _reservation(Decimal("2"), limit, price)
    r2 = replace(
        first,
        decision=replace(first.decision, decision_id=DecisionId("dec-exact-2")),
        client_order_id=ClientOrderId("tc-exact-2"),
    )
    [second] = await ledger.orders.reserve([r2], holder="engine-a", epoch=epoch)
    assert second.status is ReserveStatus.RESERVED
    async with db_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT limit_price::text FROM orders WHERE client_order_id = 'tc-exact-2'")
            )
        ).scalar()
    assert stored == "1000"
