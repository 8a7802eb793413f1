"""Kalshi's balances as one snapshot that the venue's later reads cover.

Kalshi's REST reads lag its writes (``GET /exchange/user_data_timestamp`` says how far), and
cash, positions and resting orders are three separate reads. The balance check compares the
snapshot with the ledger after fetching the venue's fills again: a fill the snapshot holds but
the fills listing does not show yet would be taken into a baseline and counted a second time
when it lands. So a snapshot is returned only once the reads cover the moment it was taken, and
only when the resting orders (what holds cash) were the same before and after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from engine.domain.types import Asset, Side, VenueName, VenueOrderId, VenueOrderStatus
from engine.exceptions import ReadsBehind
from engine.venues.base import BalanceReport, OrderReport
from engine.venues.kalshi import parsing, schemas
from engine.venues.kalshi.rest import KalshiRestClient
from engine.venues.validation import finite

#: polls of ``user_data_timestamp`` never come closer than this (its budget is shared)
MIN_POLL_S = 0.05


async def balance_snapshot(
    rest: KalshiRestClient,
    *,
    venue: VenueName,
    open_orders: Callable[[], Awaitable[Sequence[OrderReport]]],
    now: Callable[[], datetime],
    read_margin: timedelta,
    wait: timedelta,
) -> list[BalanceReport]:
    """Cash (``USD``: available, and what resting bids hold) and each market's YES position
    as its own asset (resting asks hold contracts; a NO position is negative). Our ledger books
    buying NO as selling YES (the YES price received, where Kalshi took the NO price): USD
    counts $1 per NO contract held, which its settlement pays or not.

    Raises :class:`ReadsBehind` when the reads do not cover the snapshot within ``wait`` or the
    resting orders changed while it was read: compare later, never with this snapshot.
    """
    # Our clock may run behind the venue's by up to ``read_margin``: the reads must be current
    # to that much past a moment by our clock to cover it. The resting orders are read current
    # before and after cash and positions: the same both times, they are the ones whose cash
    # the balance read left out (an order placed or canceled between would count in one read
    # and not in the other).
    await _reads_cover(rest, now() + read_margin, wait=wait)
    resting = _resting(await open_orders())
    balance = await rest.balance()
    positions: list[schemas.MarketPosition] = []
    cursor = ""
    while True:
        page = await rest.positions(cursor)
        positions.extend(page.market_positions)
        if not page.cursor or not page.market_positions:
            break
        cursor = page.cursor
    await _reads_cover(rest, now() + read_margin, wait=wait)
    orders = await open_orders()
    if _resting(orders) != resting:
        raise ReadsBehind("kalshi resting orders changed while the balances were read")
    held_cash = Decimal(0)
    held: dict[str, Decimal] = {}
    for o in orders:
        left = o.quantity - o.filled_quantity
        if o.side is Side.BUY and o.limit_price is not None:
            held_cash += left * o.limit_price
        else:
            held[o.symbol] = held.get(o.symbol, Decimal(0)) + left
    received = now()
    cash = (
        finite(balance.balance_dollars, "balance_dollars")
        if balance.balance_dollars is not None
        else Decimal(balance.balance) / 100
    ) + no_contracts(positions)
    reports = [
        BalanceReport(
            venue=venue,
            asset=parsing.USD,
            free=cash,
            locked=held_cash,
            venue_ts=None,
            received_at=received,
        )
    ]
    for p in positions:
        total = finite(p.position_fp, "position_fp")
        locked = held.get(p.ticker, Decimal(0))
        reports.append(
            BalanceReport(
                venue=venue,
                asset=Asset(p.ticker),
                free=total - locked,
                locked=locked,
                venue_ts=None,
                received_at=received,
            )
        )
    return reports


async def _reads_cover(rest: KalshiRestClient, moment: datetime, *, wait: timedelta) -> None:
    """Return once ``user_data_timestamp`` is at or past ``moment``; ``ReadsBehind`` after
    ``wait``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait.total_seconds()
    while True:
        as_of = parsing.parse_time((await rest.user_data_timestamp()).as_of_time, "as_of_time")
        if as_of is not None and as_of >= moment:
            return
        left = deadline - loop.time()
        if left <= 0:
            raise ReadsBehind(
                f"kalshi reads are current to {as_of}, not yet to the balances read at {moment}"
            )
        # the reads lag by about the gap seen: one more look after it, usually enough
        behind = (moment - as_of).total_seconds() if as_of is not None else MIN_POLL_S
        await asyncio.sleep(min(max(behind, MIN_POLL_S), left))


def _resting(orders: Sequence[OrderReport]) -> dict[VenueOrderId | None, tuple[object, ...]]:
    return {
        o.venue_order_id: (o.client_order_id, o.filled_quantity, o.quantity, o.limit_price)
        for o in orders
        if o.status in (VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED)
    }


def no_contracts(positions: Sequence[schemas.MarketPosition]) -> Decimal:
    """NO contracts held over all markets (Kalshi's negative positions)."""
    return sum((-p.position_fp for p in positions if p.position_fp < 0), Decimal(0))
