"""No NaN or Infinity in a money or quantity column: refused by the ledger before any SQL, and by
the database itself (``ck_<table>_<column>_finite``) for anything that writes around the ledger."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import Asset, Symbol, VenueOrderStatus
from engine.exceptions import LedgerError
from engine.ledger.db import asyncpg_connect_kwargs
from engine.ledger.ledger import Ledger
from engine.venues.base import BalanceReport, InstrumentRules
from tests.integration.test_ledger import (
    ACCOUNT,
    HOLDER,
    T0,
    VENUE,
    Clock,
    fill,
    report,
    reservation,
    reserve_one,
    scalar,
)

NON_FINITE = ("NaN", "Infinity", "-Infinity")


@pytest.fixture
def ledger(db_engine: AsyncEngine) -> Ledger:
    return Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=Clock())


@pytest.fixture
async def epoch(ledger: Ledger) -> int:
    got = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert got is not None
    return got


@pytest.mark.parametrize("value", [*NON_FINITE, "sNaN"])
async def test_a_fill_with_a_non_finite_quantity_is_refused_and_nothing_is_stored(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine, value: str
) -> None:
    coid = await reserve_one(ledger, epoch)
    good = fill(coid, "1", "0.1")
    bad = replace(fill(coid, "2", "0.1"), quantity=Decimal(value))
    with pytest.raises(LedgerError, match=f"fill 2 of BTCUSDT.*qty is {re.escape(value)}"):
        await ledger.fills.append([good, bad])  # the batch is refused whole
    assert await scalar(db_engine, "SELECT count(*) FROM fills") == 0
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.filled_qty == 0


@pytest.mark.parametrize("field", ["price", "fee"])
async def test_a_fill_with_a_non_finite_price_or_fee_is_refused(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine, field: str
) -> None:
    coid = await reserve_one(ledger, epoch)
    bad = replace(fill(coid, "1", "0.1"), **{field: Decimal("Infinity")})
    with pytest.raises(LedgerError, match=f"{field} is Infinity"):
        await ledger.fills.append([bad])
    assert await scalar(db_engine, "SELECT count(*) FROM fills") == 0


async def test_a_venue_report_with_a_nan_filled_quantity_does_not_fill_the_order(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    # In SQL, NaN >= requested_qty is true: unchecked, this report would mark the order FILLED.
    coid = await reserve_one(ledger, epoch)
    nan_report = replace(
        report(coid, VenueOrderStatus.PARTIALLY_FILLED), filled_quantity=Decimal("NaN")
    )
    with pytest.raises(LedgerError, match="filled_quantity is NaN"):
        await ledger.orders.apply_report(nan_report, cause="lookup")
    nan_fill = replace(fill(coid, "1", "0.1"), quantity=Decimal("NaN"))
    with pytest.raises(LedgerError, match="qty is NaN"):
        await ledger.orders.apply_report(
            report(coid, VenueOrderStatus.PARTIALLY_FILLED, filled="0.1", fills=(nan_fill,)),
            cause="lookup",
        )
    order = await ledger.orders.get(coid)
    assert order is not None
    assert order.state.value == "PENDING_SUBMIT"
    assert await scalar(db_engine, "SELECT count(*) FROM fills") == 0


async def test_reservations_decisions_balances_and_instruments_refuse_non_finite_numbers(
    ledger: Ledger, epoch: int, db_engine: AsyncEngine
) -> None:
    with pytest.raises(LedgerError, match=r"reservation .* quantity is NaN"):
        await ledger.orders.reserve(
            [replace(reservation(), quantity=Decimal("NaN"))], holder=HOLDER, epoch=epoch
        )
    r = reservation(2)
    with pytest.raises(LedgerError, match=r"decision .* limit_price is -Infinity"):
        await ledger.decisions.record(replace(r.decision, limit_price=Decimal("-Infinity")))
    with pytest.raises(LedgerError, match=r"balance of USDT .* free is NaN"):
        await ledger.balances.record(
            [
                BalanceReport(
                    venue=VENUE,
                    asset=Asset("USDT"),
                    free=Decimal("NaN"),
                    locked=Decimal(0),
                    venue_ts=T0,
                    received_at=T0,
                )
            ]
        )
    rules = InstrumentRules(
        symbol=Symbol("BTCUSDT"),
        base_asset=Asset("BTC"),
        quote_asset=Asset("USDT"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("Infinity"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal(100),
    )
    with pytest.raises(LedgerError, match="step_size is Infinity"):
        await ledger.balances.upsert_instrument(rules)
    with pytest.raises(LedgerError, match="baseline of USDT: total is NaN"):
        await ledger.balances.save_baselines({Asset("USDT"): Decimal("NaN")}, fill_id=0)
    for table in ("decisions", "orders", "balances", "instruments", "balance_baselines"):
        assert await scalar(db_engine, f"SELECT count(*) FROM {table}") == 0, table


# -- the database refuses them too, whoever writes ------------------------------------------------

_FILL = """INSERT INTO fills (venue, symbol, trade_id, account, side, qty, price, fee, venue_ts,
                              received_at, recorded_at)
           VALUES ('simulator', 'BTCUSDT', $2, 'acct', 'BUY', $1::numeric, 1, 0, now(), now(),
                   now())"""
_DECISION = """INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side,
                                      quantity, reason, md_ts, decided_at, interval_key, sequence,
                                      verdicts, outcome)
               VALUES ($1, 's', 'acct', 'BTCUSDT', 'buy', 'BUY', 1, 'r', now(), now(), 'k', 0,
                       '[]', 'reserved')"""
_ORDER = """INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol,
                                side, type, time_in_force, requested_qty, state, created_at,
                                expires_at, updated_at)
            VALUES ($2, $3, 's', 'acct', 'simulator', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC',
                    $1::numeric, 'PENDING_SUBMIT', now(), now(), now())"""
_BALANCE = """INSERT INTO balances (account, venue, asset, free, locked, received_at)
              VALUES ('acct', 'simulator', 'USDT', $1::numeric, 0, now())"""


@pytest.mark.parametrize("value", NON_FINITE)
async def test_raw_sql_cannot_store_nan_or_infinity(database_url: URL, value: str) -> None:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        # (text, cast in SQL: exactly what a psql user or another program would send)
        with pytest.raises(asyncpg.CheckViolationError, match="ck_fills_qty_finite"):
            await conn.execute(_FILL, value, "t1")
        with pytest.raises(asyncpg.CheckViolationError, match="ck_fills_price_finite"):
            await conn.execute(_FILL.replace("$1::numeric, 1, 0", "1, $1::numeric, 0"), value, "t2")
        await conn.execute(_DECISION, "d1")
        with pytest.raises(asyncpg.CheckViolationError, match="ck_orders_requested_qty_finite"):
            await conn.execute(_ORDER, value, "c1", "d1")
        with pytest.raises(asyncpg.CheckViolationError, match="ck_balances_free_finite"):
            await conn.execute(_BALANCE, value)
        with pytest.raises(asyncpg.CheckViolationError, match="ck_decisions_quantity_finite"):
            await conn.execute(_DECISION.replace("'BUY', 1,", f"'BUY', '{value}',"), "d2")
        # finite values and NULL in a nullable column still go in
        await conn.execute(_FILL, "0.5", "t3")
        await conn.execute(_ORDER, "0.5", "c2", "d1")
        await conn.execute(_DECISION.replace("'BUY', 1,", "'BUY', NULL,"), "d3")
        assert await conn.fetchval("SELECT count(*) FROM fills") == 1
    finally:
        await conn.close()
