"""Wire structs: the venue's JSON, field for field.

Names follow the JSON. Where Binance uses one-letter keys that differ only by case (``c``/``C``,
``t``/``T``, ``n``/``N`` in ``executionReport``), the attribute gets a readable name and
``msgspec.field(name=...)`` keeps the wire key. Prices and quantities arrive as JSON strings and
decode straight to ``Decimal``; enums stay ``str`` here and are validated in :mod:`.parsing`, so
an unknown value is reported there with its payload. Unknown keys are ignored: the venue adds
fields without notice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import msgspec
from msgspec import field

from engine.venues.validation import MAX_ID

#: checked by msgspec itself, in C, as it decodes: the cheapest place for the hot path's id
UpdateId = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]

# -- REST -----------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True):
    code: int
    msg: str = ""


class ServerTime(msgspec.Struct, frozen=True):
    serverTime: int


class RateLimit(msgspec.Struct, frozen=True):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class SymbolFilter(msgspec.Struct, frozen=True):
    """Any symbol filter; only the fields of its ``filterType`` are present."""

    filterType: str
    minPrice: Decimal | None = None
    maxPrice: Decimal | None = None
    tickSize: Decimal | None = None
    minQty: Decimal | None = None
    maxQty: Decimal | None = None
    stepSize: Decimal | None = None
    minNotional: Decimal | None = None
    maxNotional: Decimal | None = None
    applyToMarket: bool | None = None
    applyMinToMarket: bool | None = None
    applyMaxToMarket: bool | None = None
    avgPriceMins: int | None = None


class SymbolInfo(msgspec.Struct, frozen=True):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    filters: list[SymbolFilter] = []
    orderTypes: list[str] = []


class ExchangeInfo(msgspec.Struct, frozen=True):
    serverTime: int
    timezone: str = "UTC"
    rateLimits: list[RateLimit] = []
    symbols: list[SymbolInfo] = []


class OrderFill(msgspec.Struct, frozen=True):
    """One element of ``fills`` in a ``newOrderRespType=FULL`` answer."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    tradeId: int


class Order(msgspec.Struct, frozen=True):
    """New-order (RESULT/FULL), query-order, cancel-order and open-orders answers."""

    symbol: str
    orderId: int
    clientOrderId: str
    price: Decimal
    origQty: Decimal
    executedQty: Decimal
    cummulativeQuoteQty: Decimal
    status: str
    timeInForce: str
    type: str
    side: str
    orderListId: int = -1
    #: only in cancel answers: the id of the order that was canceled
    origClientOrderId: str | None = None
    transactTime: int | None = None
    time: int | None = None
    updateTime: int | None = None
    workingTime: int | None = None
    fills: list[OrderFill] = []


class AccountTrade(msgspec.Struct, frozen=True):
    """One element of ``GET /api/v3/myTrades``."""

    symbol: str
    id: int
    orderId: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commissionAsset: str
    time: int
    isBuyer: bool
    isMaker: bool
    quoteQty: Decimal | None = None
    orderListId: int = -1


class AssetBalance(msgspec.Struct, frozen=True):
    asset: str
    free: Decimal
    locked: Decimal


class AccountInfo(msgspec.Struct, frozen=True):
    balances: list[AssetBalance]
    updateTime: int | None = None
    canTrade: bool = True
    accountType: str = "SPOT"


# -- market streams -------------------------------------------------------------------------


class CombinedFrame(msgspec.Struct, frozen=True):
    """``/stream?streams=...`` wraps every payload as ``{"stream": ..., "data": ...}``."""

    stream: str
    data: msgspec.Raw


class BookTicker(msgspec.Struct, frozen=True):
    update_id: UpdateId = field(name="u")
    symbol: str = field(name="s")
    bid_price: Decimal = field(name="b")
    bid_qty: Decimal = field(name="B")
    ask_price: Decimal = field(name="a")
    ask_qty: Decimal = field(name="A")


class TradeEvent(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    trade_id: int = field(name="t")
    price: Decimal = field(name="p")
    quantity: Decimal = field(name="q")
    trade_time: int = field(name="T")
    buyer_is_maker: bool = field(name="m")


class Kline(msgspec.Struct, frozen=True):
    start_time: int = field(name="t")
    close_time: int = field(name="T")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    open: Decimal = field(name="o")
    close: Decimal = field(name="c")
    high: Decimal = field(name="h")
    low: Decimal = field(name="l")
    volume: Decimal = field(name="v")
    closed: bool = field(name="x")
    trades: int | None = field(default=None, name="n")
    quote_volume: Decimal | None = field(default=None, name="q")


class KlineEvent(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    kline: Kline = field(name="k")


# -- WebSocket API and user data events -----------------------------------------------------


class WsApiError(msgspec.Struct, frozen=True):
    code: int
    msg: str = ""


class WsApiFrame(msgspec.Struct, frozen=True):
    """Any WebSocket API frame: a response (``id``/``status``) or a subscription event."""

    id: str | int | None = None
    status: int | None = None
    #: ``Raw`` cannot sit in a union with ``None``: an absent member is an empty ``Raw``
    result: msgspec.Raw = msgspec.Raw()
    error: WsApiError | None = None
    subscriptionId: int | None = None
    event: msgspec.Raw = msgspec.Raw()

    @property
    def has_event(self) -> bool:
        return bool(self.event) and bytes(self.event) != b"null"


class EventHeader(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")


class ExecutionReport(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")
    event_time: int = field(name="E")
    symbol: str = field(name="s")
    #: the order's client id; on a cancel this is the *cancel request's* id (see ``orig_...``)
    client_order_id: str = field(name="c")
    side: str = field(name="S")
    order_type: str = field(name="o")
    time_in_force: str = field(name="f")
    quantity: Decimal = field(name="q")
    price: Decimal = field(name="p")
    #: on a cancel: the client id of the order that was canceled; otherwise ``""``
    orig_client_order_id: str = field(name="C")
    execution_type: str = field(name="x")
    order_status: str = field(name="X")
    reject_reason: str = field(name="r")
    order_id: int = field(name="i")
    last_qty: Decimal = field(name="l")
    cumulative_qty: Decimal = field(name="z")
    last_price: Decimal = field(name="L")
    commission: Decimal = field(name="n")
    commission_asset: str | None = field(name="N")
    transaction_time: int = field(name="T")
    trade_id: int = field(name="t")
    is_maker: bool = field(name="m")
    cumulative_quote_qty: Decimal | None = field(default=None, name="Z")
    last_quote_qty: Decimal | None = field(default=None, name="Y")
    order_creation_time: int | None = field(default=None, name="O")
    order_list_id: int = field(default=-1, name="g")


class AccountPositionBalance(msgspec.Struct, frozen=True):
    asset: str = field(name="a")
    free: Decimal = field(name="f")
    locked: Decimal = field(name="l")


class OutboundAccountPosition(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")
    event_time: int = field(name="E")
    last_update_time: int = field(name="u")
    balances: list[AccountPositionBalance] = field(name="B")


class BalanceUpdate(msgspec.Struct, frozen=True):
    event_type: str = field(name="e")
    event_time: int = field(name="E")
    asset: str = field(name="a")
    delta: Decimal = field(name="d")
    clear_time: int = field(name="T")
