"""Kalshi wire structs → domain reports. Every number is checked (finite, in range, right sign)
before it leaves here; anything else is a :class:`MalformedMessage` naming the field.

Direction: Kalshi's ``book_side`` is on the YES book: ``bid`` buys YES (our ``BUY``), ``ask``
sells YES (our ``SELL``; economically buying NO at ``1 - price``). Prices are YES prices in
dollars; the quote asset is ``USD`` and the base asset is the market ticker's YES contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain.market import Quote
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
from engine.exceptions import MalformedMessage
from engine.venues.base import FillReport, InstrumentRules, OrderReport, OrderRequest
from engine.venues.kalshi import schemas
from engine.venues.validation import finite, known, ms_timestamp, non_empty, non_negative, positive

USD = Asset("USD")
#: contracts trade in hundredths
COUNT_STEP = Decimal("0.01")
#: no order may ask for more contracts than this (a sanity bound, not a venue rule)
MAX_COUNT = Decimal(10_000_000)

SIDES: Mapping[str, Side] = {"bid": Side.BUY, "ask": Side.SELL}
BOOK_SIDES: Mapping[Side, str] = {Side.BUY: "bid", Side.SELL: "ask"}
TIME_IN_FORCE: Mapping[TimeInForce, str] = {
    TimeInForce.GTC: "good_till_canceled",
    TimeInForce.IOC: "immediate_or_cancel",
    TimeInForce.FOK: "fill_or_kill",
}
_STATUSES = frozenset({"resting", "canceled", "executed"})


def direction(
    *,
    book_side: str | None,
    outcome_side: str | None = None,
    side: str | None = None,
    action: str | None = None,
    is_yes: bool | None = None,
) -> Side:
    """BUY or SELL of YES from the canonical ``book_side``, else the fields it replaces:
    ``outcome_side`` (``yes`` is a YES bid), legacy ``side`` + ``action`` (buying NO sells YES),
    or ``side`` / ``is_yes`` alone (the outcome side)."""
    if book_side is not None:
        return known(SIDES, book_side, "book_side")
    if outcome_side is not None:
        return known(_OUTCOME, outcome_side, "outcome_side")
    if side is not None and action is not None:
        contract = known(_OUTCOME, side, "side")
        return contract if known(_ACTIONS, action, "action") else contract.opposite
    if side is not None:
        return known(_OUTCOME, side, "side")
    if is_yes is not None:
        return Side.BUY if is_yes else Side.SELL
    raise MalformedMessage("no direction: book_side, outcome_side and side are all missing")


_OUTCOME: Mapping[str, Side] = {"yes": Side.BUY, "no": Side.SELL}
#: True when the action keeps the contract side's direction
_ACTIONS: Mapping[str, bool] = {"buy": True, "sell": False}


def parse_time(text: str | None, what: str) -> datetime | None:
    """RFC 3339 → aware UTC; ``None`` stays ``None``."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"{what} is not an RFC 3339 time: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        raise MalformedMessage(f"{what} has no time zone: {text[:40]!r}")
    # the same 2000..2100 bounds as epoch timestamps (validation.ms_timestamp)
    ms_timestamp(int(parsed.timestamp()) * 1000, what)
    return parsed.astimezone(UTC)


def price(value: Decimal, what: str) -> Decimal:
    """A YES price: within [0, 1] dollars."""
    if not 0 <= non_negative(value, what) <= 1:
        raise MalformedMessage(f"{what} {value} is outside 0..1 dollars")
    return value


def venue_status(
    status: str, filled: Decimal, remaining: Decimal, tif: TimeInForce | None
) -> VenueOrderStatus:
    """Kalshi's three statuses in the common vocabulary. An IOC/FOK remainder Kalshi cancels is
    ``EXPIRED`` (as Binance says it) when we know the order's time in force."""
    if status not in _STATUSES:
        raise MalformedMessage(f"unknown kalshi order status {status[:40]!r}")
    if status == "executed":
        return VenueOrderStatus.FILLED
    if status == "resting":
        return VenueOrderStatus.PARTIALLY_FILLED if filled > 0 else VenueOrderStatus.NEW
    if tif in (TimeInForce.IOC, TimeInForce.FOK) and remaining >= 0:
        return VenueOrderStatus.EXPIRED
    return VenueOrderStatus.CANCELED


def parse_order(
    order: schemas.Order,
    *,
    venue: VenueName,
    received_at: datetime,
    tif: TimeInForce | None = None,
    order_type: OrderType = OrderType.LIMIT,
) -> OrderReport:
    filled = non_negative(order.fill_count_fp, "fill_count_fp")
    remaining = non_negative(order.remaining_count_fp, "remaining_count_fp")
    initial = positive(order.initial_count_fp, "initial_count_fp")
    if filled > initial:
        raise MalformedMessage(f"fill_count_fp {filled} exceeds initial_count_fp {initial}")
    return OrderReport(
        venue=venue,
        symbol=Symbol(non_empty(order.ticker, "ticker")),
        client_order_id=ClientOrderId(order.client_order_id),
        venue_order_id=VenueOrderId(non_empty(order.order_id, "order_id")),
        side=known(SIDES, order.book_side, "book_side"),
        type=order_type,
        status=venue_status(order.status, filled, remaining, tif),
        quantity=initial,
        limit_price=None
        if order_type is OrderType.MARKET
        else price(order.yes_price_dollars, "yes_price_dollars"),
        filled_quantity=filled,
        cumulative_quote=None,
        venue_ts=parse_time(order.last_update_time or order.created_time, "order time"),
        received_at=received_at,
    )


def parse_user_order(
    msg: schemas.WsUserOrder,
    *,
    venue: VenueName,
    received_at: datetime,
    tif: TimeInForce | None = None,
    order_type: OrderType = OrderType.LIMIT,
) -> OrderReport:
    side = direction(
        book_side=msg.book_side,
        outcome_side=msg.outcome_side,
        side=msg.side,
        action=msg.action,
        is_yes=msg.is_yes,
    )
    order = schemas.Order(
        order_id=msg.order_id,
        client_order_id=msg.client_order_id,
        ticker=msg.ticker,
        book_side=BOOK_SIDES[side],
        status=msg.status,
        yes_price_dollars=msg.yes_price_dollars,
        fill_count_fp=msg.fill_count_fp,
        remaining_count_fp=msg.remaining_count_fp,
        initial_count_fp=msg.initial_count_fp,
    )
    report = parse_order(
        order, venue=venue, received_at=received_at, tif=tif, order_type=order_type
    )
    stamp = msg.last_updated_ts_ms or msg.created_ts_ms
    if stamp is None:
        return report
    return _with_ts(report, ms_timestamp(stamp, "user_order ts"))


def _with_ts(report: OrderReport, ts: datetime) -> OrderReport:
    return replace(report, venue_ts=ts)


def parse_create(
    answer: schemas.CreateOrderResponse,
    request: OrderRequest,
    *,
    sent_price: Decimal,
    venue: VenueName,
    received_at: datetime,
) -> OrderReport:
    """The create answer with what we asked: the answer has counts, not the order itself."""
    filled = non_negative(answer.fill_count, "fill_count")
    remaining = non_negative(answer.remaining_count, "remaining_count")
    if answer.client_order_id and answer.client_order_id != request.client_order_id:
        raise MalformedMessage(
            f"create answered for {answer.client_order_id!r}, sent {request.client_order_id!r}"
        )
    if filled + remaining > request.quantity:
        raise MalformedMessage(f"create answer counts {filled}+{remaining} exceed the order")
    if remaining > 0:
        status = "resting"
    elif filled >= request.quantity:
        status = "executed"
    else:
        status = "canceled"
    tif = TimeInForce.IOC if request.type is OrderType.MARKET else request.time_in_force
    return OrderReport(
        venue=venue,
        symbol=request.symbol,
        client_order_id=request.client_order_id,
        venue_order_id=VenueOrderId(non_empty(answer.order_id, "order_id")),
        side=request.side,
        type=request.type,
        status=venue_status(status, filled, remaining, tif),
        quantity=request.quantity,
        limit_price=None if request.type is OrderType.MARKET else sent_price,
        filled_quantity=filled,
        cumulative_quote=None
        if answer.average_fill_price is None
        else price(answer.average_fill_price, "average_fill_price") * filled,
        venue_ts=ms_timestamp(answer.ts_ms, "ts_ms"),
        received_at=received_at,
    )


def parse_fill(
    fill: schemas.Fill,
    *,
    venue: VenueName,
    received_at: datetime,
    client_order_id: ClientOrderId | None = None,
) -> FillReport:
    ts = parse_time(fill.created_time, "created_time")
    if ts is None:
        if fill.ts is None:
            raise MalformedMessage("fill has neither created_time nor ts")
        ts = ms_timestamp(fill.ts * 1000, "fill ts")
    return FillReport(
        venue=venue,
        symbol=Symbol(non_empty(fill.ticker, "ticker")),
        trade_id=TradeId(non_empty(fill.fill_id, "fill_id")),
        client_order_id=client_order_id,
        venue_order_id=VenueOrderId(non_empty(fill.order_id, "order_id")),
        side=known(SIDES, fill.book_side, "book_side"),
        quantity=positive(fill.count_fp, "count_fp"),
        price=price(fill.yes_price_dollars, "yes_price_dollars"),
        fee=non_negative(fill.fee_cost, "fee_cost"),
        fee_asset=USD,
        liquidity=Liquidity.TAKER if fill.is_taker else Liquidity.MAKER,
        venue_ts=ts,
        received_at=received_at,
    )


def parse_ws_fill(msg: schemas.WsFill, *, venue: VenueName, received_at: datetime) -> FillReport:
    if msg.fee_cost is None:
        raise MalformedMessage("fill message without fee_cost")
    return FillReport(
        venue=venue,
        symbol=Symbol(non_empty(msg.market_ticker, "market_ticker")),
        trade_id=TradeId(non_empty(msg.trade_id, "trade_id")),
        client_order_id=ClientOrderId(msg.client_order_id) if msg.client_order_id else None,
        venue_order_id=VenueOrderId(non_empty(msg.order_id, "order_id")),
        side=direction(
            book_side=msg.book_side,
            outcome_side=msg.outcome_side,
            side=msg.side,
            action=msg.action,
        ),
        quantity=positive(msg.count_fp, "count_fp"),
        price=price(msg.yes_price_dollars, "yes_price_dollars"),
        fee=non_negative(msg.fee_cost, "fee_cost"),
        fee_asset=USD,
        liquidity=Liquidity.TAKER if msg.is_taker else Liquidity.MAKER,
        venue_ts=ms_timestamp(msg.ts_ms, "ts_ms"),
        received_at=received_at,
    )


def parse_ticker(msg: schemas.WsTicker, *, received_at: datetime) -> Quote:
    return Quote(
        symbol=Symbol(non_empty(msg.market_ticker, "market_ticker")),
        bid=price(msg.yes_bid_dollars, "yes_bid_dollars"),
        bid_size=non_negative(msg.yes_bid_size_fp, "yes_bid_size_fp"),
        ask=price(msg.yes_ask_dollars, "yes_ask_dollars"),
        ask_size=non_negative(msg.yes_ask_size_fp, "yes_ask_size_fp"),
        venue_ts=None if msg.ts_ms is None else ms_timestamp(msg.ts_ms, "ts_ms"),
        received_at=received_at,
    )


def parse_market(market: schemas.Market) -> InstrumentRules:
    """Rules from a market: its price grid from ``price_ranges`` (the finest step is the tick;
    every range is kept in ``extra`` for a finer check), counts in hundredths."""
    if not market.price_ranges:
        raise MalformedMessage(f"market {market.ticker!r} has no price_ranges")
    ranges = sorted(market.price_ranges, key=lambda r: r.start)
    for r in ranges:
        price(r.start, "price_ranges.start")
        price(r.end, "price_ranges.end")
        positive(r.step, "price_ranges.step")
    tick = min(r.step for r in ranges)
    low = ranges[0].start if ranges[0].start > 0 else ranges[0].start + ranges[0].step
    high = ranges[-1].end if ranges[-1].end < 1 else ranges[-1].end - ranges[-1].step
    close = parse_time(market.close_time, "close_time")
    extra = {
        "status": market.status,
        "price_ranges": ";".join(f"{r.start}-{r.end}/{r.step}" for r in ranges),
    }
    if close is not None:
        extra["close_time"] = close.isoformat()
    return InstrumentRules(
        symbol=Symbol(non_empty(market.ticker, "ticker")),
        base_asset=Asset(market.ticker),
        quote_asset=USD,
        tick_size=finite(tick, "tick"),
        step_size=COUNT_STEP,
        min_qty=COUNT_STEP,
        max_qty=MAX_COUNT,
        min_price=low,
        max_price=high,
        extra=extra,
    )


def on_grid(rules: InstrumentRules, value: Decimal) -> bool:
    """Whether ``value`` lies on one of the market's price ranges' grids."""
    text = rules.extra.get("price_ranges", "")
    for part in filter(None, text.split(";")):
        span, step = part.split("/")
        start, end = (Decimal(x) for x in span.split("-"))
        if start <= value <= end and (value - start) % Decimal(step) == 0:
            return True
    return False
