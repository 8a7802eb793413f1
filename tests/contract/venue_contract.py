"""The venue contract: what every :class:`~engine.venues.base.Venue` adapter must do, written once.

To run it against an adapter, subclass :class:`VenueContract` in a ``test_*.py`` module (name the
class ``Test…``) and override only :meth:`VenueContract.open_venue`, the factory: an async context
manager yielding a :class:`VenueHarness` around a fresh, funded account, and tearing it down after.

The suite moves the market itself through the harness's :class:`MarketDriver`, so an adapter only
has to say how quotes reach its venue (``PaperVenue.set_quote`` in-process; an HTTP call to the
simulator's control endpoint for the Binance adapter). Everything else goes through the ``Venue``
protocol, so a behaviour pinned here holds for the production code path too. Adding an adapter:

    class TestBinanceAdapterContract(VenueContract):
        def open_venue(self) -> AbstractAsyncContextManager[VenueHarness]:
            return binance_on_simulator_harness()  # yields VenueHarness(venue=..., market=...)

The suite assumes only what both Binance and the paper venue guarantee: client order ids unique
among *open* orders, trade ids ordered per symbol, fills at the limit price or better, fees in
the base or quote asset (another fee asset is simply left out of the balance arithmetic).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import pytest

from engine.domain.types import (
    Asset,
    ClientOrderId,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    VenueOrderStatus,
)
from engine.exceptions import Definitive, NotFound
from engine.venues.base import (
    FillReport,
    InstrumentRules,
    OrderReport,
    OrderRequest,
    UserEvent,
    Venue,
)
from tests.helpers import eventually


class MarketDriver(Protocol):
    """Moves a venue's market so that the suite's orders fill (or do not) when it wants."""

    async def set_quote(self, symbol: Symbol, *, bid: Decimal, ask: Decimal, size: Decimal) -> None:
        """Make ``bid``/``ask`` the top of book of ``symbol``, with ``size`` at each side.

        When this returns the venue has matched against the new quote: a resting order the quote
        crosses has filled (at its limit price or better) up to ``size`` in total per side, and
        the fill is visible to ``find_order`` and ``trades_since``. Streams may lag behind.
        An order submitted afterwards takes at most what is left of ``size`` at the touch.
        """
        ...


async def _stream_is_live(stream: AsyncIterator[UserEvent]) -> None:
    """In-process streams are live as soon as they exist."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueHarness:
    """A venue account under test and the means to move its market."""

    venue: Venue
    market: MarketDriver
    symbol: Symbol
    #: a price on the tick grid, well inside the instrument's price limits; the suite quotes
    #: the market within a few dozen ticks of it
    price: Decimal
    #: an order size that passes every filter near ``price`` and whose half (rounded down to the
    #: step) does too; the account holds enough of both assets for a few such orders each way
    quantity: Decimal
    #: awaited after each ``user_stream()`` subscription until the stream is live (e.g. until
    #: the simulator has seen the WebSocket connect), so no event of the test is missed
    stream_ready: Callable[[AsyncIterator[UserEvent]], Awaitable[None]] = _stream_is_live


_ids = itertools.count(1)


def new_client_order_id(label: str) -> ClientOrderId:
    """Unique for the test session, within the 36 characters every venue accepts."""
    return ClientOrderId(f"ct{next(_ids)}-{label}"[:36])


class VenueContract:
    """The suite. Subclasses override :meth:`open_venue` and nothing else."""

    def open_venue(self) -> AbstractAsyncContextManager[VenueHarness]:
        raise NotImplementedError("a contract test class must provide open_venue()")

    @pytest.fixture
    async def h(self) -> AsyncIterator[VenueHarness]:
        async with self.open_venue() as harness:
            yield harness

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def rules(h: VenueHarness) -> InstrumentRules:
        return await h.venue.instrument_rules(h.symbol)

    @staticmethod
    async def tick(h: VenueHarness) -> Decimal:
        return (await h.venue.instrument_rules(h.symbol)).tick_size

    @staticmethod
    async def half(h: VenueHarness) -> Decimal:
        rules = await h.venue.instrument_rules(h.symbol)
        return rules.round_quantity(h.quantity / 2)

    async def quiet_market(self, h: VenueHarness) -> tuple[Decimal, Decimal]:
        """Quote ``price`` bid, ten ticks up ask, with plenty of size; returns (bid, ask)."""
        t = await self.tick(h)
        bid, ask = h.price, h.price + 10 * t
        await h.market.set_quote(h.symbol, bid=bid, ask=ask, size=h.quantity * 10)
        return bid, ask

    async def passive_buy_price(self, h: VenueHarness) -> Decimal:
        """A buy price below the quiet market's bid: the order rests."""
        return h.price - 10 * await self.tick(h)

    async def cross_buy(self, h: VenueHarness, limit: Decimal, size: Decimal) -> None:
        """Move the ask down onto ``limit`` with ``size`` on it: resting buys there fill."""
        t = await self.tick(h)
        await h.market.set_quote(h.symbol, bid=limit - 2 * t, ask=limit, size=size)

    @staticmethod
    def limit_order(
        h: VenueHarness,
        coid: ClientOrderId,
        side: Side,
        price: Decimal,
        quantity: Decimal | None = None,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> OrderRequest:
        return OrderRequest(
            client_order_id=coid,
            symbol=h.symbol,
            side=side,
            type=OrderType.LIMIT,
            quantity=h.quantity if quantity is None else quantity,
            limit_price=price,
            time_in_force=tif,
        )

    @staticmethod
    async def fills_of(h: VenueHarness, coid: ClientOrderId) -> list[FillReport]:
        return [f for f in await h.venue.trades_since(h.symbol, None) if f.client_order_id == coid]

    @staticmethod
    async def balance_totals(h: VenueHarness) -> dict[Asset, tuple[Decimal, Decimal]]:
        """``{asset: (free, locked)}``."""
        return {b.asset: (b.free, b.locked) for b in await h.venue.balances()}

    # ------------------------------------------------------------------ placing and looking up

    async def test_submit_accepts_a_resting_limit_order_and_reports_it(
        self, h: VenueHarness
    ) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        coid = new_client_order_id("rest")

        report = await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        assert report.venue == h.venue.name
        assert report.client_order_id == coid
        assert report.venue_order_id
        assert report.symbol == h.symbol
        assert report.side is Side.BUY
        assert report.type is OrderType.LIMIT
        assert report.status is VenueOrderStatus.NEW
        assert report.quantity == h.quantity
        assert report.limit_price == price
        assert report.filled_quantity == 0
        assert report.received_at.utcoffset() is not None

    async def test_find_order_returns_the_order_by_client_order_id(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        coid = new_client_order_id("find")
        placed = await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        found = await h.venue.find_order(h.symbol, coid)

        assert found.client_order_id == coid
        assert found.venue_order_id == placed.venue_order_id
        assert found.status is VenueOrderStatus.NEW
        assert (found.side, found.quantity, found.limit_price) == (Side.BUY, h.quantity, price)

    async def test_find_order_of_an_unknown_client_order_id_raises_not_found(
        self, h: VenueHarness
    ) -> None:
        with pytest.raises(NotFound):
            await h.venue.find_order(h.symbol, new_client_order_id("never-sent"))

    async def test_open_orders_lists_resting_orders_until_they_close(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        first, second = new_client_order_id("open-a"), new_client_order_id("open-b")
        await h.venue.submit(self.limit_order(h, first, Side.BUY, price))
        await h.venue.submit(self.limit_order(h, second, Side.BUY, price))

        assert {o.client_order_id for o in await h.venue.open_orders(h.symbol)} >= {first, second}
        await h.venue.cancel(h.symbol, first)

        remaining = {o.client_order_id for o in await h.venue.open_orders(h.symbol)}
        assert second in remaining
        assert first not in remaining

    async def test_duplicate_client_order_id_of_an_open_order_is_refused_definitively(
        self, h: VenueHarness
    ) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        t = await self.tick(h)
        coid = new_client_order_id("dup")
        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        with pytest.raises(Definitive):
            await h.venue.submit(self.limit_order(h, coid, Side.BUY, price - t))

        same = [o for o in await h.venue.open_orders(h.symbol) if o.client_order_id == coid]
        assert len(same) == 1
        assert same[0].limit_price == price

    async def test_client_order_id_can_be_reused_once_the_order_filled(
        self, h: VenueHarness
    ) -> None:
        _, ask = await self.quiet_market(h)
        coid = new_client_order_id("reuse")
        first = await h.venue.submit(self.limit_order(h, coid, Side.BUY, ask))
        assert (await h.venue.find_order(h.symbol, coid)).status is VenueOrderStatus.FILLED

        again = await h.venue.submit(self.limit_order(h, coid, Side.BUY, ask))

        assert again.client_order_id == coid
        assert again.venue_order_id != first.venue_order_id
        assert again.status in (VenueOrderStatus.NEW, VenueOrderStatus.FILLED)

    async def test_filter_failure_is_definitive_and_places_nothing(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        off_tick = await self.passive_buy_price(h) + await self.tick(h) / 2
        coid = new_client_order_id("filter")

        with pytest.raises(Definitive):
            await h.venue.submit(self.limit_order(h, coid, Side.BUY, off_tick))

        with pytest.raises(NotFound):
            await h.venue.find_order(h.symbol, coid)

    async def test_instrument_rules_describe_the_symbol(self, h: VenueHarness) -> None:
        rules = await self.rules(h)

        assert rules.symbol == h.symbol
        assert rules.tick_size > 0
        assert rules.step_size > 0
        assert rules.violations(h.quantity, h.price) == []

    # ------------------------------------------------------------------ cancel

    async def test_cancel_closes_an_open_order(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        coid = new_client_order_id("cancel")
        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        canceled = await h.venue.cancel(h.symbol, coid)

        assert canceled.client_order_id == coid
        assert canceled.status is VenueOrderStatus.CANCELED
        assert (await h.venue.find_order(h.symbol, coid)).status is VenueOrderStatus.CANCELED
        assert coid not in {o.client_order_id for o in await h.venue.open_orders(h.symbol)}

    async def test_cancel_of_an_unknown_order_raises_not_found(self, h: VenueHarness) -> None:
        with pytest.raises(NotFound):
            await h.venue.cancel(h.symbol, new_client_order_id("cancel-unknown"))

    # ------------------------------------------------------------------ fills

    async def test_marketable_limit_order_fills_at_its_limit_or_better(
        self, h: VenueHarness
    ) -> None:
        _, ask = await self.quiet_market(h)
        coid = new_client_order_id("take")

        await h.venue.submit(self.limit_order(h, coid, Side.BUY, ask))

        order = await h.venue.find_order(h.symbol, coid)
        assert order.status is VenueOrderStatus.FILLED
        assert order.filled_quantity == h.quantity
        fills = await self.fills_of(h, coid)
        assert sum((f.quantity for f in fills), Decimal(0)) == h.quantity
        assert all(f.price <= ask and f.side is Side.BUY for f in fills)

    async def test_market_order_fills_at_the_touch(self, h: VenueHarness) -> None:
        bid, _ = await self.quiet_market(h)
        coid = new_client_order_id("mkt")
        order = OrderRequest(
            client_order_id=coid,
            symbol=h.symbol,
            side=Side.SELL,
            type=OrderType.MARKET,
            quantity=h.quantity,
        )

        await h.venue.submit(order)

        assert (await h.venue.find_order(h.symbol, coid)).status is VenueOrderStatus.FILLED
        fills = await self.fills_of(h, coid)
        assert sum((f.quantity for f in fills), Decimal(0)) == h.quantity
        assert all(f.price == bid and f.side is Side.SELL for f in fills)

    async def test_partial_fills_are_reported_with_filled_quantity_and_trades(
        self, h: VenueHarness
    ) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        half = await self.half(h)
        coid = new_client_order_id("partial")
        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        await self.cross_buy(h, price, size=half)

        order = await h.venue.find_order(h.symbol, coid)
        assert order.status is VenueOrderStatus.PARTIALLY_FILLED
        assert order.filled_quantity == half
        fills = await self.fills_of(h, coid)
        assert [f.quantity for f in fills] == [half]
        assert fills[0].price <= price

        await self.cross_buy(h, price, size=h.quantity)

        order = await h.venue.find_order(h.symbol, coid)
        assert order.status is VenueOrderStatus.FILLED
        assert order.filled_quantity == h.quantity
        assert sum((f.quantity for f in await self.fills_of(h, coid)), Decimal(0)) == h.quantity

    async def test_ioc_order_fills_what_it_can_and_expires_the_rest(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        half = await self.half(h)
        await self.cross_buy(h, price, size=half)
        coid = new_client_order_id("ioc")

        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price, tif=TimeInForce.IOC))

        order = await h.venue.find_order(h.symbol, coid)
        assert order.status is VenueOrderStatus.EXPIRED
        assert order.filled_quantity == half
        assert coid not in {o.client_order_id for o in await h.venue.open_orders(h.symbol)}

    async def test_trades_since_returns_only_later_trades_oldest_first(
        self, h: VenueHarness
    ) -> None:
        _, ask = await self.quiet_market(h)
        coids = [new_client_order_id(f"seq{i}") for i in range(3)]
        for coid in coids:
            await h.venue.submit(self.limit_order(h, coid, Side.BUY, ask))

        everything = await h.venue.trades_since(h.symbol, None)
        ours = [f for f in everything if f.client_order_id in coids]
        assert [f.client_order_id for f in ours] == coids
        first = ours[0]

        later = await h.venue.trades_since(h.symbol, first.trade_id)

        position = [f.trade_id for f in everything].index(first.trade_id)
        assert [f.trade_id for f in later] == [f.trade_id for f in everything[position + 1 :]]
        assert [f.client_order_id for f in later if f.client_order_id in coids] == coids[1:]
        assert len(await h.venue.trades_since(h.symbol, first.trade_id, limit=1)) == 1

    # ------------------------------------------------------------------ balances

    async def test_balances_move_with_fills(self, h: VenueHarness) -> None:
        rules = await self.rules(h)
        _, ask = await self.quiet_market(h)
        before = await self.balance_totals(h)
        coid = new_client_order_id("bal")

        await h.venue.submit(self.limit_order(h, coid, Side.BUY, ask))

        after = await self.balance_totals(h)
        fills = await self.fills_of(h, coid)
        assert sum((f.quantity for f in fills), Decimal(0)) == h.quantity
        base_fee = sum((f.fee for f in fills if f.fee_asset == rules.base_asset), Decimal(0))
        quote_fee = sum((f.fee for f in fills if f.fee_asset == rules.quote_asset), Decimal(0))
        cost = sum((f.price * f.quantity for f in fills), Decimal(0))

        def total(snapshot: dict[Asset, tuple[Decimal, Decimal]], asset: Asset) -> Decimal:
            free, locked = snapshot.get(asset, (Decimal(0), Decimal(0)))
            return free + locked

        assert total(after, rules.base_asset) - total(before, rules.base_asset) == (
            h.quantity - base_fee
        )
        assert total(after, rules.quote_asset) - total(before, rules.quote_asset) == -(
            cost + quote_fee
        )

    async def test_a_resting_order_locks_what_it_may_spend_until_canceled(
        self, h: VenueHarness
    ) -> None:
        rules = await self.rules(h)
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        before = (await self.balance_totals(h))[rules.quote_asset]
        coid = new_client_order_id("lock")

        await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))

        free, locked = (await self.balance_totals(h))[rules.quote_asset]
        assert locked - before[1] >= h.quantity * price
        assert free + locked == before[0] + before[1]
        await h.venue.cancel(h.symbol, coid)
        assert (await self.balance_totals(h))[rules.quote_asset] == before

    # ------------------------------------------------------------------ user stream

    async def test_user_stream_delivers_the_fill(self, h: VenueHarness) -> None:
        await self.quiet_market(h)
        price = await self.passive_buy_price(h)
        coid = new_client_order_id("stream")
        stream = h.venue.user_stream()
        async with collecting(stream) as events:
            await h.stream_ready(stream)
            await h.venue.submit(self.limit_order(h, coid, Side.BUY, price))
            await self.cross_buy(h, price, size=h.quantity)

            def streamed_fills() -> list[FillReport]:
                return [
                    e for e in events if isinstance(e, FillReport) and e.client_order_id == coid
                ]

            await eventually(
                lambda: sum((f.quantity for f in streamed_fills()), Decimal(0)) == h.quantity,
                message="the fill never arrived on the user stream",
            )
            await eventually(
                lambda: _status_seen(events, coid, VenueOrderStatus.FILLED),
                message="no FILLED order report on the user stream",
            )
            fills = streamed_fills()

        assert {f.trade_id for f in fills} <= {f.trade_id for f in await self.fills_of(h, coid)}


def _status_seen(
    events: Sequence[UserEvent], coid: ClientOrderId, status: VenueOrderStatus
) -> bool:
    return any(
        isinstance(e, OrderReport) and e.client_order_id == coid and e.status is status
        for e in events
    )


@contextlib.asynccontextmanager
async def collecting(stream: AsyncIterator[UserEvent]) -> AsyncIterator[list[UserEvent]]:
    """Read ``stream`` into a list in a background task for the duration of the block."""
    events: list[UserEvent] = []

    async def pump() -> None:
        async for event in stream:
            events.append(event)

    task = asyncio.create_task(pump(), name="contract-user-stream")
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
