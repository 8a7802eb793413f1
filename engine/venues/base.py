"""The venue port: what execution, reconciliation and market data need from an exchange.

Adapters (Binance, the paper venue) implement :class:`Venue`. Every failure leaves an adapter as
one of the :mod:`engine.exceptions` venue outcomes (``Definitive`` / ``Ambiguous`` / ``NotFound`` /
``RateLimited`` / ``AuthFailed``), translated once at the boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from typing import Protocol, runtime_checkable

from engine.domain.market import MarketEvent
from engine.domain.types import (
    Asset,
    ClientOrderId,
    Liquidity,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueName,
    VenueOrderId,
    VenueOrderStatus,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """A new order, always with the client order id reserved in the ledger."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    type: OrderType
    quantity: Decimal
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


@dataclass(frozen=True, slots=True, kw_only=True)
class FillReport:
    """One execution of one of our orders, as the venue reported it."""

    venue: VenueName
    symbol: Symbol
    trade_id: TradeId
    client_order_id: ClientOrderId | None
    venue_order_id: VenueOrderId | None
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: Asset | None
    liquidity: Liquidity | None
    venue_ts: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReport:
    """An order's state on the venue, from a submit/lookup/cancel answer or a stream message."""

    venue: VenueName
    symbol: Symbol
    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId | None
    side: Side
    type: OrderType
    status: VenueOrderStatus
    quantity: Decimal
    limit_price: Decimal | None
    filled_quantity: Decimal
    #: cumulative quote quantity (sum of price * qty over fills), when the venue gives it
    cumulative_quote: Decimal | None
    venue_ts: datetime | None
    received_at: datetime
    #: fills carried in this answer (e.g. Binance ``newOrderRespType=FULL``); may be partial
    fills: tuple[FillReport, ...] = ()
    #: the venue's reason text for rejections / expiries, if any
    reason: str | None = None
    #: for cancels Binance reports the *original* client id in ``C``; this keeps the id of the
    #: cancel request itself when it differs
    cancel_client_order_id: ClientOrderId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceReport:
    venue: VenueName
    asset: Asset
    free: Decimal
    locked: Decimal
    venue_ts: datetime | None
    received_at: datetime

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamReconnected:
    """The user stream was re-established: events may have been missed, reconcile now."""

    venue: VenueName
    received_at: datetime
    reason: str = ""


UserEvent = OrderReport | FillReport | BalanceReport | StreamReconnected


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentRules:
    """Trading rules for one symbol (Binance PRICE_FILTER / LOT_SIZE / NOTIONAL)."""

    symbol: Symbol
    base_asset: Asset
    quote_asset: Asset
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal = Decimal(0)
    max_notional: Decimal | None = None
    min_price: Decimal = Decimal(0)
    max_price: Decimal | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def round_quantity(self, quantity: Decimal) -> Decimal:
        """Round down to the step size: never more than the intent asked for."""
        if self.step_size <= 0:
            return quantity
        steps = (quantity / self.step_size).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.step_size).normalize() if steps else Decimal(0)

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Round to the tick, towards the passive side (a buy never pays more than asked)."""
        if self.tick_size <= 0:
            return price
        ticks = price / self.tick_size
        rounding = ROUND_DOWN if side is Side.BUY else ROUND_UP
        return (ticks.to_integral_value(rounding=rounding) * self.tick_size).normalize()

    def violations(self, quantity: Decimal, price: Decimal | None) -> list[str]:
        """What a venue would refuse this order for; empty when it passes the filters."""
        out: list[str] = []
        if quantity < self.min_qty:
            out.append(f"quantity {quantity} below min_qty {self.min_qty}")
        if quantity > self.max_qty:
            out.append(f"quantity {quantity} above max_qty {self.max_qty}")
        if self.step_size > 0 and (quantity % self.step_size) != 0:
            out.append(f"quantity {quantity} not a multiple of step_size {self.step_size}")
        if price is not None:
            if self.tick_size > 0 and (price % self.tick_size) != 0:
                out.append(f"price {price} not a multiple of tick_size {self.tick_size}")
            if price < self.min_price or (self.max_price is not None and price > self.max_price):
                out.append(f"price {price} outside [{self.min_price}, {self.max_price}]")
            notional = quantity * price
            if notional < self.min_notional:
                out.append(f"notional {notional} below min_notional {self.min_notional}")
            if self.max_notional is not None and notional > self.max_notional:
                out.append(f"notional {notional} above max_notional {self.max_notional}")
        return out


def quantize_money(value: Decimal, places: int = 8) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


@runtime_checkable
class Venue(Protocol):
    """One exchange account. Methods raise the :mod:`engine.exceptions` venue outcomes."""

    @property
    def name(self) -> VenueName: ...

    async def submit(self, order: OrderRequest) -> OrderReport:
        """Place a new order. ``Ambiguous`` means: look it up before doing anything else."""
        ...

    async def find_order(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport:
        """Look an order up by client order id; ``NotFound`` when the venue does not know it."""
        ...

    async def cancel(self, symbol: Symbol, client_order_id: ClientOrderId) -> OrderReport: ...

    async def open_orders(self, symbol: Symbol | None = None) -> Sequence[OrderReport]: ...

    async def trades_since(
        self, symbol: Symbol, after_trade_id: TradeId | None, *, limit: int = 1000
    ) -> Sequence[FillReport]:
        """Our fills on ``symbol`` with trade id after ``after_trade_id`` (all when ``None``),
        oldest first, at most ``limit``."""
        ...

    async def balances(self) -> Sequence[BalanceReport]: ...

    async def instrument_rules(self, symbol: Symbol) -> InstrumentRules: ...

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        """Normalized market data; reconnects by itself and never ends until closed."""
        ...

    def user_stream(self) -> AsyncIterator[UserEvent]:
        """Our order, fill and balance events; yields ``StreamReconnected`` after each reconnect."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ListsOrders(Protocol):
    """A venue that can list a symbol's orders since a time in one call (Binance ``allOrders``):
    recovery settles many unresolved orders with it instead of one lookup each."""

    async def orders_since(self, symbol: Symbol, since: datetime) -> Sequence[OrderReport]:
        """Every order of ``symbol`` created at or after ``since``, any status, oldest first.
        A listing may lag the venue (consistency window): an order it lacks is looked up."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SettlementReport:
    """How a prediction market settled for this account, as the venue reported it."""

    venue: VenueName
    symbol: Symbol
    #: ``yes`` / ``no`` / ``void`` (engine.ledger.schema.SETTLEMENT_RESULTS)
    result: str
    #: what one YES contract paid, 0..1 in the quote asset
    payout: Decimal
    settled_at: datetime
    received_at: datetime
    #: net YES contracts held when it settled, when the venue says
    quantity: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketLifecycle:
    """A market's lifecycle step from the venue's stream (``closed``, ``determined``,
    ``settled``, ...). ``result`` and ``payout`` come with ``determined``."""

    venue: VenueName
    symbol: Symbol
    event: str
    at: datetime
    result: str | None = None
    payout: Decimal | None = None


@runtime_checkable
class SettlesMarkets(Protocol):
    """A venue whose markets settle (prediction markets): the account's settlements can be
    listed, and the lifecycle of markets is streamed. engine/settlement.py records them."""

    async def settlements_since(self, since: datetime | None) -> Sequence[SettlementReport]:
        """The account's settlements at or after ``since`` (all when ``None``), oldest first."""
        ...

    def lifecycle_stream(self) -> AsyncIterator[MarketLifecycle | StreamReconnected]:
        """Lifecycle steps of markets; yields ``StreamReconnected`` after each reconnect
        (steps may have been missed: list the settlements again)."""
        ...
