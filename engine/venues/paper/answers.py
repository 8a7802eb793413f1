"""What the paper venue answers, worded and coded as Binance would: its refusals of an order
(:func:`validate`) and its order and fill reports (:func:`order_report`, :func:`fill_report`)."""

from __future__ import annotations

from datetime import datetime

from engine.domain.records import builder
from engine.domain.types import (
    Asset,
    ClientOrderId,
    OrderType,
    Symbol,
    TradeId,
    VenueName,
    VenueOrderId,
)
from engine.exceptions import Definitive
from engine.venues.base import FillReport, InstrumentRules, OrderReport, OrderRequest
from engine.venues.matching import Expiry, Fill, Order, Touch

# Binance's codes, so that code reading ``exc.code`` behaves the same on paper and live.
CODE_UNKNOWN_SYMBOL = -1121
CODE_MANDATORY_PARAM = -1102
CODE_PARAM_NOT_REQUIRED = -1106
CODE_FILTER_FAILURE = -1013
CODE_NEW_ORDER_REJECTED = -2010
CODE_CANCEL_REJECTED = -2011
CODE_NO_SUCH_ORDER = -2013

MSG_DUPLICATE = "Duplicate order sent."
MSG_INSUFFICIENT = "Account has insufficient balance for requested action."

_REASONS = {
    Expiry.FOK_UNFILLABLE: "fill or kill: not fully fillable",
    Expiry.MARKET_EXHAUSTED: "no more liquidity at touch",
    Expiry.LIMIT_EXHAUSTED: "no more liquidity at limit",
}


def validate(order: OrderRequest, rules: InstrumentRules, touch: Touch | None) -> None:
    """The paper venue's own checks, worded its way; the core then refuses a duplicate open
    client id and an order the free balance cannot pay for."""
    if order.type is OrderType.LIMIT and order.limit_price is None:
        raise Definitive("a LIMIT order needs a limit price", code=CODE_MANDATORY_PARAM)
    if order.type is OrderType.MARKET and order.limit_price is not None:
        raise Definitive("a MARKET order takes no limit price", code=CODE_PARAM_NOT_REQUIRED)
    if order.quantity <= 0 or (order.limit_price is not None and order.limit_price <= 0):
        raise Definitive(
            f"Filter failure: quantity {order.quantity} and price {order.limit_price} "
            "must be positive",
            code=CODE_FILTER_FAILURE,
        )
    problems = rules.violations(order.quantity, order.limit_price)
    if order.type is OrderType.MARKET:
        if touch is None:
            raise Definitive(
                f"no quote for {order.symbol}: a MARKET order needs a price to fill at",
                code=CODE_NEW_ORDER_REJECTED,
            )
        notional = order.quantity * touch.price_for(order.side)
        if notional < rules.min_notional:
            problems.append(f"notional {notional} below min_notional {rules.min_notional}")
    if problems:
        raise Definitive(f"Filter failure: {'; '.join(problems)}", code=CODE_FILTER_FAILURE)


def fill_report(venue: VenueName, fill: Fill[datetime]) -> FillReport:
    # FillReport's fields in order (a backtest reports every fill): venue, symbol, trade_id,
    # client_order_id, venue_order_id, side, quantity, price, fee, fee_asset, liquidity,
    # venue_ts, received_at
    return _FILL_REPORT(
        venue,
        Symbol(fill.symbol),
        TradeId(str(fill.trade_id)),
        ClientOrderId(fill.client_order_id),
        VenueOrderId(str(fill.order_id)),
        fill.side,
        fill.quantity,
        fill.price,
        fill.fee,
        Asset(fill.fee_asset),
        fill.liquidity,
        fill.at,
        fill.at,
    )


_FILL_REPORT = builder(FillReport)
_ORDER_REPORT = builder(OrderReport)


def order_report(
    venue: VenueName, placed: Order[datetime], received_at: datetime, *, with_fills: bool = False
) -> OrderReport:
    # OrderReport's fields in order (a backtest reports every order it placed)
    return _ORDER_REPORT(
        venue,
        Symbol(placed.symbol),
        ClientOrderId(placed.client_order_id),
        VenueOrderId(str(placed.order_id)),
        placed.side,
        placed.type,
        placed.status,
        placed.quantity,
        placed.price,  # limit_price
        placed.filled,  # filled_quantity
        placed.cumulative_quote,
        placed.updated,  # venue_ts
        received_at,
        tuple(fill_report(venue, f) for f in placed.fills) if with_fills else (),  # fills
        _REASONS.get(placed.expiry) if placed.expiry is not None else None,  # reason
        None,  # cancel_client_order_id
    )
