"""Kalshi Trade API v2 wire structs (msgspec), mirroring the JSON field for field.

Only the fields tradectl reads are declared; msgspec ignores the rest, so a field the venue adds
never breaks decoding. Dollar amounts (``*_dollars``, ``price``, ``fee_cost``) and fixed-point
counts (``*_fp``, ``count``) are strings on the wire and ``Decimal`` here: never a float. The
values are range-checked by :mod:`.parsing` when they become reports.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class ErrorBody(msgspec.Struct, kw_only=True):
    """``{code, message, details}``; a 429 sends ``{"error": "too many requests"}`` instead."""

    code: str | None = None
    message: str | None = None
    details: str | None = None
    error: str | None = None


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    """Some errors come wrapped: ``{"error": {code, message, details}}``."""

    error: ErrorBody


class CreateOrderRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``POST /portfolio/events/orders`` body."""

    ticker: str
    side: str  #: ``bid`` buys YES, ``ask`` sells YES
    count: str  #: fixed-point contracts, 0-2 decimals
    price: str  #: the YES price in dollars
    time_in_force: str
    #: required by the venue, so never a default (``omit_defaults`` would drop it)
    self_trade_prevention_type: str
    client_order_id: str = ""
    post_only: bool = False
    reduce_only: bool = False


class CreateOrderResponse(msgspec.Struct, kw_only=True):
    order_id: str
    client_order_id: str = ""
    fill_count: Decimal
    remaining_count: Decimal
    average_fill_price: Decimal | None = None
    average_fee_paid: Decimal | None = None
    ts_ms: int


class CancelOrderResponse(msgspec.Struct, kw_only=True):
    order_id: str
    client_order_id: str = ""
    reduced_by: Decimal
    ts_ms: int


class Order(msgspec.Struct, kw_only=True):
    """An order from ``GET /portfolio/orders`` and ``GET /portfolio/orders/{order_id}``."""

    order_id: str
    client_order_id: str = ""
    ticker: str
    book_side: str
    type: str = "limit"
    status: str
    yes_price_dollars: Decimal
    fill_count_fp: Decimal
    remaining_count_fp: Decimal
    initial_count_fp: Decimal
    taker_fees_dollars: Decimal = Decimal(0)
    maker_fees_dollars: Decimal = Decimal(0)
    created_time: str | None = None
    last_update_time: str | None = None


class OrdersPage(msgspec.Struct, kw_only=True):
    orders: list[Order]
    cursor: str = ""


class OrderEnvelope(msgspec.Struct, kw_only=True):
    order: Order


class Fill(msgspec.Struct, kw_only=True):
    """A row of ``GET /portfolio/fills``: no client order id (only ``order_id``)."""

    fill_id: str
    order_id: str
    ticker: str
    book_side: str
    count_fp: Decimal
    yes_price_dollars: Decimal
    is_taker: bool
    fee_cost: Decimal
    created_time: str | None = None
    #: legacy: epoch seconds
    ts: int | None = None


class FillsPage(msgspec.Struct, kw_only=True):
    fills: list[Fill]
    cursor: str = ""


class Balance(msgspec.Struct, kw_only=True):
    """``GET /portfolio/balance``: ``balance`` is available cash in cents."""

    balance: int
    #: the same to the sub-cent (counts come in hundredths, so costs can too)
    balance_dollars: Decimal | None = None
    updated_ts: int | None = None


class MarketPosition(msgspec.Struct, kw_only=True):
    ticker: str
    #: contracts: positive is YES, negative is NO
    position_fp: Decimal


class PositionsPage(msgspec.Struct, kw_only=True):
    market_positions: list[MarketPosition]
    cursor: str = ""


class PriceRange(msgspec.Struct, kw_only=True):
    start: Decimal
    end: Decimal
    step: Decimal


class Market(msgspec.Struct, kw_only=True):
    ticker: str
    status: str
    close_time: str | None = None
    price_ranges: list[PriceRange] = msgspec.field(default_factory=list)


class MarketEnvelope(msgspec.Struct, kw_only=True):
    market: Market


class Settlement(msgspec.Struct, kw_only=True):
    """``GET /portfolio/settlements``: how one market settled for the account."""

    ticker: str
    market_result: str  #: ``yes`` / ``no`` / ``scalar``
    yes_count_fp: Decimal = Decimal(0)
    no_count_fp: Decimal = Decimal(0)
    #: cents paid out (winning contracts pay 100 each)
    revenue: int = 0
    settled_time: str
    fee_cost: Decimal = Decimal(0)
    #: cents one YES contract paid (absent on older records)
    value: int | None = None
    event_ticker: str = ""


class SettlementsPage(msgspec.Struct, kw_only=True):
    settlements: list[Settlement]
    cursor: str = ""


class UserDataTimestamp(msgspec.Struct, kw_only=True):
    """``GET /exchange/user_data_timestamp``: reads reflect the venue up to ``as_of_time``."""

    as_of_time: str


# -- WebSocket ------------------------------------------------------------------------------


class WsEnvelope(msgspec.Struct, kw_only=True):
    """Every server frame: ``type`` then a ``msg`` decoded per type."""

    type: str
    sid: int | None = None
    seq: int | None = None
    id: int | None = None
    #: empty when the frame has none
    msg: msgspec.Raw = msgspec.Raw()


class WsFill(msgspec.Struct, kw_only=True):
    """``fill`` channel message: carries the client order id (REST fills do not)."""

    trade_id: str
    order_id: str
    market_ticker: str
    is_taker: bool
    yes_price_dollars: Decimal
    count_fp: Decimal
    ts_ms: int
    #: required by the schema, absent from the docs' own example: a fill without it is skipped
    #: (``GET /portfolio/fills`` brings it with its fee)
    fee_cost: Decimal | None = None
    client_order_id: str | None = None
    book_side: str | None = None
    outcome_side: str | None = None
    #: legacy direction: contract side and action
    side: str | None = None
    action: str | None = None


class WsUserOrder(msgspec.Struct, kw_only=True):
    """``user_orders`` channel message (``type`` = ``user_order``)."""

    order_id: str
    client_order_id: str = ""
    ticker: str
    status: str
    yes_price_dollars: Decimal
    fill_count_fp: Decimal
    remaining_count_fp: Decimal
    initial_count_fp: Decimal
    book_side: str | None = None
    outcome_side: str | None = None
    #: legacy direction (the docs' example has only these): contract side, ``is_yes``
    side: str | None = None
    action: str | None = None
    is_yes: bool | None = None
    created_ts_ms: int | None = None
    last_updated_ts_ms: int | None = None


class WsTicker(msgspec.Struct, kw_only=True):
    """``ticker`` channel message: the YES touch."""

    market_ticker: str
    yes_bid_dollars: Decimal
    yes_ask_dollars: Decimal
    yes_bid_size_fp: Decimal = Decimal(0)
    yes_ask_size_fp: Decimal = Decimal(0)
    ts_ms: int | None = None


class WsOrderbookSnapshot(msgspec.Struct, kw_only=True):
    """``orderbook_snapshot``: every level, ``[price_dollars, count_fp]``; a side without
    levels is left out. We subscribe with ``use_yes_price``: NO levels come at YES prices (the
    YES asks), as the docs ask new integrations to."""

    market_ticker: str
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class WsOrderbookDelta(msgspec.Struct, kw_only=True):
    """``orderbook_delta``: one level's size changed by ``delta_fp`` on ``side``."""

    market_ticker: str
    price_dollars: Decimal
    delta_fp: Decimal
    side: str
    ts_ms: int | None = None


class WsTrade(msgspec.Struct, kw_only=True):
    """``trade`` channel message: a public trade, priced in YES; the taker's side."""

    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    count_fp: Decimal
    taker_book_side: str | None = None
    taker_outcome_side: str | None = None
    #: legacy name of the taker's outcome side (the docs' example has only this one)
    taker_side: str | None = None
    ts_ms: int


class WsSubscribed(msgspec.Struct, kw_only=True):
    """``subscribed`` reply: the id of a channel's new subscription."""

    channel: str
    sid: int


class WsMarketLifecycle(msgspec.Struct, kw_only=True):
    """``market_lifecycle_v2`` message: ``result`` and ``settlement_value`` (dollars) come with
    ``determined``, ``settled_ts`` with ``settled``."""

    event_type: str
    market_ticker: str
    result: str | None = None
    settlement_value: Decimal | None = None
    determination_ts: int | None = None
    settled_ts: int | None = None
    close_ts: int | None = None


class WsError(msgspec.Struct, kw_only=True):
    code: int | None = None
    msg: str = ""
