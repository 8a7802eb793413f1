"""Wire structs → domain reports, and user-stream event decoding (market data frames:
:mod:`engine.venues.binance.market_frames`).

Everything here is pure except :func:`record_malformed`, which logs the raw payload and counts it:
a message we cannot understand is skipped and reported, never allowed to end a stream task.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import msgspec
import structlog

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
from engine.venues.base import (
    BalanceReport,
    FillReport,
    InstrumentRules,
    OrderReport,
)
from engine.venues.binance import schemas
from engine.venues.metrics import VenueMetrics
from engine.venues.validation import (
    finite,
    int_id,
    known,
    ms_timestamp,
    non_empty,
    non_negative,
    positive,
)

log = structlog.get_logger(__name__)

#: names under which a credential can travel: query/form parameters, JSON keys, headers
_SECRET_KEYS = (
    r"x-mbx-apikey|api[-_]?key|api[-_]?secret|secret[-_]?key|private[-_]?key|signature"
    r"|listen[-_]?key|authorization|password|passphrase|token"
)
#: ``key=value``, ``"key": "value"``, ``key='value'``, ``Key: value`` (also JSON-in-a-string
#: ``\"key\":\"value\"``); the value is whatever follows up to a separator
_SECRET = re.compile(
    rf"""((?:\\?["'])?\b(?:{_SECRET_KEYS})\b(?:\\?["'])?\s*[=:]\s*(?:(?:Bearer|Basic)\s+)?)"""
    r"""(\\?"[^"\\]*\\?"|'[^']*'|[^&\s"',;}\]]+)""",
    re.IGNORECASE,
)
#: what is logged of a payload
MAX_LOGGED_CHARS = 4000


def scrub(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``***``.

    Payloads are venue answers, but an echoed request (an error page quoting the URL, a proxy)
    would carry our signature and API key: nothing that can hold one is logged unscrubbed.
    """
    return _SECRET.sub(r"\1***", text)


def record_malformed(metrics: VenueMetrics, source: str, raw: bytes | str, reason: str) -> None:
    """Log (with the raw payload, truncated and scrubbed) and count a message being skipped;
    ``source`` says where it came from (``rest``, ``market_stream``, ``user_stream``)."""
    metrics.malformed(source)
    # Truncated first: a secret cut at the end loses its value, never its key.
    if isinstance(raw, bytes):
        text = raw[:MAX_LOGGED_CHARS].decode("utf-8", "replace")
    else:
        text = raw[:MAX_LOGGED_CHARS]
    log.warning(
        "venue.message_malformed",
        account=metrics.account,
        venue=metrics.venue,
        source=source,
        reason=scrub(reason),
        raw=scrub(text),
    )


def skip_reason(exc: Exception) -> str:
    """What to log for a message whose decoding raised ``exc``: a bug in a decoder (anything
    other than :class:`MalformedMessage`) is named by its type so it stands out."""
    if isinstance(exc, MalformedMessage):
        return str(exc)
    return f"unexpected {type(exc).__name__} while decoding: {exc}"


def ms_to_utc(ms: int, what: str = "binance timestamp") -> datetime:
    """Binance millisecond epoch → aware UTC datetime (exact: no float rounding).

    Raises :class:`MalformedMessage` outside 2000..2100 (``datetime`` itself would raise
    ``OverflowError``/``ValueError`` far out, and anything before 2000 is not a venue time).
    """
    return ms_timestamp(ms, what)


# -- enums ----------------------------------------------------------------------------------

_STATUS = {
    "NEW": VenueOrderStatus.NEW,
    "PARTIALLY_FILLED": VenueOrderStatus.PARTIALLY_FILLED,
    "FILLED": VenueOrderStatus.FILLED,
    "CANCELED": VenueOrderStatus.CANCELED,
    "PENDING_CANCEL": VenueOrderStatus.PENDING_CANCEL,
    "REJECTED": VenueOrderStatus.REJECTED,
    "EXPIRED": VenueOrderStatus.EXPIRED,
    # Expired by self-trade prevention: for our ledger it is an expiry like any other.
    "EXPIRED_IN_MATCH": VenueOrderStatus.EXPIRED,
}

_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_TYPES = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}


def order_status(value: str) -> VenueOrderStatus:
    return known(_STATUS, value, "binance order status")


def side(value: str) -> Side:
    return known(_SIDES, value, "binance side")


def order_type(value: str) -> OrderType:
    return known(_TYPES, value, "binance order type")


def time_in_force(value: str) -> TimeInForce:
    return known(_TIFS, value, "binance time in force")


def _price_or_none(price: Decimal, what: str) -> Decimal | None:
    # MARKET orders report price "0.00000000"
    return price if non_negative(price, what) != 0 else None


def _asset_or_none(asset: str | None) -> Asset | None:
    # No commission yet: ``N`` is null, ``commissionAsset`` may be empty.
    return Asset(asset) if asset else None


# -- REST answers ---------------------------------------------------------------------------


def parse_order(order: schemas.Order, *, venue: VenueName, received_at: datetime) -> OrderReport:
    """An order answer (new/query/cancel/open) as an :class:`OrderReport`, with any fills."""
    symbol = Symbol(non_empty(order.symbol, "binance order symbol"))
    order_side = side(order.side)
    otype = order_type(order.type)
    status = order_status(order.status)
    venue_order_id = VenueOrderId(str(int_id(order.orderId, "binance orderId")))
    if order.origClientOrderId is not None:
        # Cancel answer: ``clientOrderId`` is the cancel request's own id.
        coid = ClientOrderId(non_empty(order.origClientOrderId, "binance origClientOrderId"))
        cancel_coid: ClientOrderId | None = ClientOrderId(order.clientOrderId)
    else:
        coid = ClientOrderId(non_empty(order.clientOrderId, "binance clientOrderId"))
        cancel_coid = None
    venue_ms = order.transactTime or order.updateTime or order.time
    venue_ts = ms_to_utc(venue_ms, "binance order time") if venue_ms else None
    fills = tuple(
        FillReport(
            venue=venue,
            symbol=symbol,
            trade_id=TradeId(str(int_id(f.tradeId, "binance fill tradeId"))),
            client_order_id=coid,
            venue_order_id=venue_order_id,
            side=order_side,
            quantity=positive(f.qty, "binance fill qty"),
            price=non_negative(f.price, "binance fill price"),
            fee=non_negative(f.commission, "binance fill commission"),
            fee_asset=_asset_or_none(f.commissionAsset),
            # FULL answers do not say; a fill in the placing answer took liquidity.
            liquidity=Liquidity.TAKER,
            venue_ts=venue_ts or received_at,
            received_at=received_at,
        )
        for f in order.fills
    )
    quote = finite(order.cummulativeQuoteQty, "binance cummulativeQuoteQty")
    return OrderReport(
        venue=venue,
        symbol=symbol,
        client_order_id=coid,
        venue_order_id=venue_order_id,
        side=order_side,
        type=otype,
        status=status,
        quantity=positive(order.origQty, "binance origQty"),
        limit_price=_price_or_none(order.price, "binance order price"),
        filled_quantity=non_negative(order.executedQty, "binance executedQty"),
        # "For some historical orders cummulativeQuoteQty will be < 0": not available.
        cumulative_quote=quote if quote >= 0 else None,
        venue_ts=venue_ts,
        received_at=received_at,
        fills=fills,
        cancel_client_order_id=cancel_coid,
    )


def parse_account_trade(
    trade: schemas.AccountTrade, *, venue: VenueName, received_at: datetime
) -> FillReport:
    """A ``myTrades`` row. Binance does not return the client order id here, only ``orderId``."""
    return FillReport(
        venue=venue,
        symbol=Symbol(non_empty(trade.symbol, "binance trade symbol")),
        trade_id=TradeId(str(int_id(trade.id, "binance trade id"))),
        client_order_id=None,
        venue_order_id=VenueOrderId(str(int_id(trade.orderId, "binance trade orderId"))),
        side=Side.BUY if trade.isBuyer else Side.SELL,
        quantity=positive(trade.qty, "binance trade qty"),
        price=non_negative(trade.price, "binance trade price"),
        fee=non_negative(trade.commission, "binance trade commission"),
        fee_asset=_asset_or_none(trade.commissionAsset),
        liquidity=Liquidity.MAKER if trade.isMaker else Liquidity.TAKER,
        venue_ts=ms_to_utc(trade.time, "binance trade time"),
        received_at=received_at,
    )


def parse_account(
    account: schemas.AccountInfo, *, venue: VenueName, received_at: datetime
) -> list[BalanceReport]:
    venue_ts = ms_to_utc(account.updateTime, "binance updateTime") if account.updateTime else None
    return [
        BalanceReport(
            venue=venue,
            asset=Asset(non_empty(b.asset, "binance balance asset")),
            free=non_negative(b.free, "binance balance free"),
            locked=non_negative(b.locked, "binance balance locked"),
            venue_ts=venue_ts,
            received_at=received_at,
        )
        for b in account.balances
    ]


def _bound(value: Decimal | None, what: str) -> Decimal | None:
    return None if value is None else non_negative(value, what)


def parse_instrument_rules(info: schemas.SymbolInfo) -> InstrumentRules:
    """PRICE_FILTER → tick size and price bounds, LOT_SIZE → step and quantity bounds,
    NOTIONAL (or the older MIN_NOTIONAL) → notional bounds. A 0 bound means "disabled"."""
    symbol = non_empty(info.symbol, "binance exchangeInfo symbol")
    filters = {f.filterType: f for f in info.filters}
    price = filters.get("PRICE_FILTER")
    lot = filters.get("LOT_SIZE")
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
    if lot is None or lot.stepSize is None or lot.minQty is None or lot.maxQty is None:
        raise MalformedMessage(f"binance symbol {symbol} has no usable LOT_SIZE filter")
    extra = {"status": info.status}
    market_lot = filters.get("MARKET_LOT_SIZE")
    if market_lot is not None and market_lot.maxQty is not None:
        extra["market_max_qty"] = str(non_negative(market_lot.maxQty, "MARKET_LOT_SIZE maxQty"))
    tick_size = _bound(price.tickSize, "PRICE_FILTER tickSize") if price is not None else None
    min_price = _bound(price.minPrice, "PRICE_FILTER minPrice") if price is not None else None
    max_price = _bound(price.maxPrice, "PRICE_FILTER maxPrice") if price is not None else None
    min_notional = (
        _bound(notional.minNotional, "NOTIONAL minNotional") if notional is not None else None
    )
    max_notional = (
        _bound(notional.maxNotional, "NOTIONAL maxNotional") if notional is not None else None
    )
    return InstrumentRules(
        symbol=Symbol(symbol),
        base_asset=Asset(non_empty(info.baseAsset, "binance baseAsset")),
        quote_asset=Asset(non_empty(info.quoteAsset, "binance quoteAsset")),
        tick_size=tick_size or Decimal(0),
        step_size=non_negative(lot.stepSize, "LOT_SIZE stepSize"),
        min_qty=non_negative(lot.minQty, "LOT_SIZE minQty"),
        max_qty=non_negative(lot.maxQty, "LOT_SIZE maxQty"),
        min_notional=min_notional or Decimal(0),
        max_notional=max_notional if max_notional else None,
        min_price=min_price or Decimal(0),
        max_price=max_price if max_price else None,
        extra=extra,
    )


# -- user data events -----------------------------------------------------------------------

UserReport = OrderReport | FillReport | BalanceReport

#: ``x`` of an executionReport; only TRADE carries a fill, but an unknown one might too
_EXECUTION_TYPES = frozenset(
    {"NEW", "CANCELED", "REPLACED", "REJECTED", "TRADE", "EXPIRED", "TRADE_PREVENTION", "AMENDMENT"}
)


def parse_execution_report(
    er: schemas.ExecutionReport, *, venue: VenueName, received_at: datetime
) -> list[UserReport]:
    """An ``executionReport`` → the order's state, preceded by a fill when ``x`` is ``TRADE``.

    On cancels Binance puts the cancel request's id in ``c`` and the canceled order's id in
    ``C``; the report is keyed by the order's own id.
    """
    order_side = side(er.side)
    status = order_status(er.order_status)
    otype = order_type(er.order_type)
    if er.execution_type not in _EXECUTION_TYPES:
        raise MalformedMessage(f"unknown binance execution type {er.execution_type[:40]!r}")
    if er.orig_client_order_id:
        coid = ClientOrderId(er.orig_client_order_id)
        cancel_coid: ClientOrderId | None = ClientOrderId(er.client_order_id)
    else:
        coid = ClientOrderId(non_empty(er.client_order_id, "binance executionReport c"))
        cancel_coid = None
    symbol = Symbol(non_empty(er.symbol, "binance executionReport symbol"))
    venue_order_id = VenueOrderId(str(int_id(er.order_id, "binance executionReport i")))
    venue_ts = ms_to_utc(er.transaction_time, "binance executionReport T")
    cumulative_quote = er.cumulative_quote_qty
    out: list[UserReport] = []
    if er.execution_type == "TRADE":
        if er.trade_id < 0:
            raise MalformedMessage("binance executionReport TRADE without a trade id")
        out.append(
            FillReport(
                venue=venue,
                symbol=symbol,
                trade_id=TradeId(str(int_id(er.trade_id, "binance executionReport t"))),
                client_order_id=coid,
                venue_order_id=venue_order_id,
                side=order_side,
                quantity=positive(er.last_qty, "binance executionReport l"),
                price=non_negative(er.last_price, "binance executionReport L"),
                fee=non_negative(er.commission, "binance executionReport n"),
                fee_asset=_asset_or_none(er.commission_asset),
                liquidity=Liquidity.MAKER if er.is_maker else Liquidity.TAKER,
                venue_ts=venue_ts,
                received_at=received_at,
            )
        )
    out.append(
        OrderReport(
            venue=venue,
            symbol=symbol,
            client_order_id=coid,
            venue_order_id=venue_order_id,
            side=order_side,
            type=otype,
            status=status,
            quantity=positive(er.quantity, "binance executionReport q"),
            limit_price=_price_or_none(er.price, "binance executionReport p"),
            filled_quantity=non_negative(er.cumulative_qty, "binance executionReport z"),
            cumulative_quote=None
            if cumulative_quote is None
            else non_negative(cumulative_quote, "binance executionReport Z"),
            venue_ts=venue_ts,
            received_at=received_at,
            reason=er.reject_reason if er.reject_reason not in ("", "NONE") else None,
            cancel_client_order_id=cancel_coid,
        )
    )
    return out


def parse_account_position(
    evt: schemas.OutboundAccountPosition, *, venue: VenueName, received_at: datetime
) -> list[UserReport]:
    venue_ts = ms_to_utc(evt.last_update_time, "binance outboundAccountPosition u")
    return [
        BalanceReport(
            venue=venue,
            asset=Asset(non_empty(b.asset, "binance balance asset")),
            free=non_negative(b.free, "binance balance free"),
            locked=non_negative(b.locked, "binance balance locked"),
            venue_ts=venue_ts,
            received_at=received_at,
        )
        for b in evt.balances
    ]


_ER_DECODER = msgspec.json.Decoder(schemas.ExecutionReport)
_POSITION_DECODER = msgspec.json.Decoder(schemas.OutboundAccountPosition)
_BALANCE_UPDATE_DECODER = msgspec.json.Decoder(schemas.BalanceUpdate)
_HEADER_DECODER = msgspec.json.Decoder(schemas.EventHeader)

#: user data events we know and deliberately do not turn into reports
IGNORED_EVENTS = frozenset({"listStatus", "externalLockUpdate"})
#: events after which the subscription delivers nothing more: reconnect and resubscribe
TERMINAL_EVENTS = frozenset({"eventStreamTerminated", "listenKeyExpired", "serverShutdown"})


class StreamTerminated(Exception):
    """The venue ended the subscription (e.g. ``eventStreamTerminated``)."""


def decode_user_event(raw: bytes, *, venue: VenueName, received_at: datetime) -> list[UserReport]:
    """One user data event payload (the ``event`` object) → reports.

    Raises :class:`MalformedMessage` for anything undecodable or carrying unknown enum values,
    :class:`StreamTerminated` when the venue ended the subscription.
    """
    try:
        header = _HEADER_DECODER.decode(raw)
        kind = header.event_type
        if kind == "executionReport":
            return parse_execution_report(
                _ER_DECODER.decode(raw), venue=venue, received_at=received_at
            )
        if kind == "outboundAccountPosition":
            return parse_account_position(
                _POSITION_DECODER.decode(raw), venue=venue, received_at=received_at
            )
        if kind == "balanceUpdate":
            # A delta only; Binance follows it with outboundAccountPosition carrying the new
            # absolute balance, which is what BalanceReport holds.
            upd = _BALANCE_UPDATE_DECODER.decode(raw)
            log.info(
                "binance.balance_update",
                venue=venue,
                asset=upd.asset[:40],
                delta=str(finite(upd.delta, "binance balanceUpdate d")),
                clear_time=upd.clear_time,
            )
            return []
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"undecodable binance user event: {exc}", raw=raw) from None
    except MalformedMessage as exc:
        raise MalformedMessage(str(exc), raw=raw) from None
    if kind in TERMINAL_EVENTS:
        raise StreamTerminated(kind)
    if kind in IGNORED_EVENTS:
        return []
    raise MalformedMessage(f"unknown binance user event type {kind[:40]!r}", raw=raw)


_WS_API_FRAME_DECODER = msgspec.json.Decoder(schemas.WsApiFrame)


def decode_ws_api_frame(raw: bytes) -> schemas.WsApiFrame:
    """One WebSocket API frame (a response or a subscription event envelope).

    Raises :class:`MalformedMessage` for anything undecodable; the event inside is decoded by
    :func:`decode_user_event`.
    """
    try:
        return _WS_API_FRAME_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"undecodable binance ws-api frame: {exc}", raw=raw) from None


def ws_api_subscription_id(frame: schemas.WsApiFrame) -> int | None:
    """The ``subscriptionId`` of a subscribe answer; ``None`` when absent or unreadable (it is
    only logged)."""
    if not frame.result:
        return None
    try:
        result = _SUBSCRIPTION_RESULT_DECODER.decode(bytes(frame.result))
    except msgspec.DecodeError:
        return None
    return result.subscriptionId


class _SubscriptionResult(msgspec.Struct, frozen=True):
    subscriptionId: int | None = None


_SUBSCRIPTION_RESULT_DECODER = msgspec.json.Decoder(_SubscriptionResult)
