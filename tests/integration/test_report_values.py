"""What a venue report stores is exactly what the venue said: the ACK batch's reports and every
path's fills travel as one JSON parameter each (engine/ledger/report_batch.py, fills.py), so
numbers, instants and text must come out of ``json_to_recordset`` digit for digit, whichever
path wrote them (a batch of ACKs, one report, the fill path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import (
    Asset,
    ClientOrderId,
    Liquidity,
    OrderState,
    TradeId,
    VenueOrderId,
    VenueOrderStatus,
)
from engine.ledger.ledger import Ledger
from engine.ledger.reports import Ack
from engine.venues.base import FillReport
from tests.integration.test_ledger import ACCOUNT, HOLDER, VENUE, fill, report, reservation

T0 = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
#: aware but not UTC: the instant is what counts
PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE_THIRTY = timezone(-timedelta(hours=5, minutes=30))
ODD = 'a "quoted" \\ back — ünïcode 🚀\nsecond line'
LONG_PRICE = Decimal("12345678901234567890.123456789012345678")


def _odd_fills(coid: str) -> list[FillReport]:
    """Two fills summing to the order's 0.5: scales kept, exponents both ways, 38 digits,
    odd text in the trade id and fee asset, instants with offsets and microseconds."""
    first = replace(
        fill(coid, "x", "0.25000", price="1"),
        trade_id=TradeId(f'{coid}/t "1" \\ ü\n'),
        venue_order_id=VenueOrderId(f'v-"{coid}"\\ü'),
        price=LONG_PRICE,
        fee=Decimal("1E-8"),
        fee_asset=Asset(ODD),
        liquidity=Liquidity.TAKER,
        venue_ts=(T0 + timedelta(microseconds=7)).astimezone(PLUS_TWO),
        received_at=T0 + timedelta(seconds=1, microseconds=999999),
    )
    second = replace(
        fill(coid, "y", "0.25"),
        trade_id=TradeId(f"{coid}/🚀'2'"),
        quantity=Decimal("2.5E-1"),
        price=Decimal("3E+4"),
        fee=Decimal("0.0012300"),
        fee_asset=None,
        liquidity=None,
        venue_ts=(T0 + timedelta(microseconds=1)).astimezone(MINUS_FIVE_THIRTY),
        received_at=(T0 + timedelta(seconds=2)).astimezone(PLUS_TWO),
    )
    return [first, second]


async def _fill_rows(db_engine: AsyncEngine, coid: str) -> list[tuple[object, ...]]:
    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT trade_id, venue_order_id, side, qty::text, price::text, fee::text,"
                    " fee_asset, liquidity, venue_ts, received_at, account, venue, symbol"
                    " FROM fills WHERE client_order_id = :coid ORDER BY venue_ts DESC"
                ),
                {"coid": coid},
            )
        ).all()
    return [tuple(r) for r in rows]


def _expected(coid: str) -> list[tuple[object, ...]]:
    return [
        (
            f'{coid}/t "1" \\ ü\n',
            f'v-"{coid}"\\ü',
            "BUY",
            "0.25000",
            format(LONG_PRICE, "f"),
            "0.00000001",
            ODD,
            "TAKER",
            T0 + timedelta(microseconds=7),
            T0 + timedelta(seconds=1, microseconds=999999),
            ACCOUNT,
            VENUE,
            "BTCUSDT",
        ),
        (
            f"{coid}/🚀'2'",
            "v-1",
            "BUY",
            "0.25",
            "30000",
            "0.0012300",
            None,
            None,
            T0 + timedelta(microseconds=1),
            T0 + timedelta(seconds=2),
            ACCOUNT,
            VENUE,
            "BTCUSDT",
        ),
    ]


async def _ready(ledger: Ledger, n: int) -> ClientOrderId:
    epoch = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert epoch is not None
    r = reservation(n)
    await ledger.orders.reserve([r], holder=HOLDER, epoch=epoch)
    return r.client_order_id


async def _through_an_ack_batch(ledger: Ledger, coid: ClientOrderId) -> None:
    filled = replace(
        report(coid, VenueOrderStatus.FILLED, filled="0.5", fills=tuple(_odd_fills(coid))),
        venue_order_id=VenueOrderId(f'v-"{coid}"\\ü'),
    )
    [order] = await ledger.orders.record_acks([Ack(coid, filled, T0)])
    assert not isinstance(order, Exception)
    assert order.state is OrderState.FILLED


async def _through_one_report(ledger: Ledger, coid: ClientOrderId) -> None:
    filled = report(coid, VenueOrderStatus.FILLED, filled="0.5", fills=tuple(_odd_fills(coid)))
    order = await ledger.orders.apply_report(filled, cause="stream")
    assert order is not None
    assert order.state is OrderState.FILLED


async def _through_the_fill_path(ledger: Ledger, coid: ClientOrderId) -> None:
    new = await ledger.fills.append(_odd_fills(coid))
    assert len(new) == 2


@pytest.mark.parametrize(
    "write",
    [_through_an_ack_batch, _through_one_report, _through_the_fill_path],
    ids=["ack-batch", "one-report", "fill-path"],
)
async def test_fills_store_their_numbers_instants_and_text_exactly(
    db_engine: AsyncEngine, write: Callable[[Ledger, ClientOrderId], Awaitable[None]]
) -> None:
    ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=lambda: T0)
    coid = await _ready(ledger, 1)
    await write(ledger, coid)
    assert await _fill_rows(db_engine, coid) == _expected(coid)


async def test_an_ack_batch_stores_each_reports_ids_instants_and_reason_exactly(
    db_engine: AsyncEngine,
) -> None:
    ledger = Ledger(db_engine, account=ACCOUNT, venue=VENUE, clock=lambda: T0)
    epoch = await ledger.leases.acquire(HOLDER, timedelta(seconds=30))
    assert epoch is not None
    rs = [reservation(n) for n in (1, 2, 3)]
    await ledger.orders.reserve(rs, holder=HOLDER, epoch=epoch)
    filled, partial, rejected = (r.client_order_id for r in rs)
    sent = (T0 - timedelta(microseconds=3)).astimezone(PLUS_TWO)
    venue_ts = (T0 + timedelta(microseconds=11)).astimezone(MINUS_FIVE_THIRTY)

    def ack(coid: ClientOrderId, status: VenueOrderStatus, **kwargs: object) -> Ack:
        r = replace(
            report(coid, status, **kwargs),  # type: ignore[arg-type]
            venue_order_id=VenueOrderId(f'v-"{coid}"\\ü'),
            venue_ts=venue_ts,
        )
        return Ack(coid, r, sent)

    results = await ledger.orders.record_acks(
        [
            ack(filled, VenueOrderStatus.FILLED, filled="0.5", fills=tuple(_odd_fills(filled))),
            # the venue's cumulative quantity, with an exponent, counts before its fills arrive
            ack(partial, VenueOrderStatus.PARTIALLY_FILLED, filled="1.0E-1"),
            ack(rejected, VenueOrderStatus.REJECTED, reason=ODD),
        ]
    )
    assert [r.state for r in results if not isinstance(r, Exception)] == [
        OrderState.FILLED,
        OrderState.PARTIALLY_FILLED,
        OrderState.REJECTED,
    ]
    assert await _fill_rows(db_engine, filled) == _expected(filled)
    async with db_engine.connect() as conn:
        orders = (
            await conn.execute(
                text(
                    "SELECT client_order_id, venue_order_id, submitted_at, acked_at, venue_ts,"
                    " last_error FROM orders ORDER BY client_order_id"
                )
            )
        ).all()
        details = (
            await conn.execute(
                text(
                    "SELECT client_order_id, detail FROM order_events WHERE cause = 'ack'"
                    " ORDER BY client_order_id"
                )
            )
        ).all()
    by_coid = {o.client_order_id: o for o in orders}
    for coid in (filled, partial, rejected):
        o = by_coid[coid]
        assert o.venue_order_id == f'v-"{coid}"\\ü'
        assert o.submitted_at == T0 - timedelta(microseconds=3)
        assert o.acked_at == T0
        assert o.venue_ts == T0 + timedelta(microseconds=11)
    assert by_coid[rejected].last_error == ODD
    assert by_coid[filled].last_error is None
    assert {d.client_order_id: d.detail for d in details} == {
        filled: {
            "venue_status": "FILLED",
            "venue_filled_qty": "0.5",
            "venue_order_id": f'v-"{filled}"\\ü',
        },
        partial: {
            "venue_status": "PARTIALLY_FILLED",
            "venue_filled_qty": "0.10",
            "venue_order_id": f'v-"{partial}"\\ü',
        },
        rejected: {
            "venue_status": "REJECTED",
            "venue_filled_qty": "0",
            "venue_order_id": f'v-"{rejected}"\\ü',
            "reason": ODD,
        },
    }
