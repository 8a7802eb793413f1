"""Wire structs → domain reports, and frame decoding for the streams.

Everything here is pure except :func:`record_malformed`, which logs the raw payload and counts it:
a message we cannot understand is skipped and reported, never allowed to end a stream task.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import msgspec
import structlog
from prometheus_client import REGISTRY, Counter

from engine.domain.market import Bar, MarketEvent, Quote, Trade
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

log = structlog.get_logger(__name__)

_METRIC = "tradectl_venue_malformed_messages_total"


def _malformed_counter() -> Counter:
    # Several modules (and test re-imports) may ask for it; the default registry refuses a
    # second registration of the same name, so reuse the one already there.
    existing = REGISTRY._names_to_collectors.get(_METRIC)
    if isinstance(existing, Counter):
        return existing
    return Counter(
        _METRIC,
        "Venue messages that could not be decoded or held unknown values; skipped.",
        ["venue"],
    )


MALFORMED_MESSAGES = _malformed_counter()


def record_malformed(venue: str, raw: bytes | str, reason: str) -> None:
    """Log (with the raw payload) and count a message that is being skipped."""
    MALFORMED_MESSAGES.labels(venue=venue).inc()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    log.warning("venue_message_malformed", venue=venue, reason=reason, raw=text[:4000])


def ms_to_utc(ms: int) -> datetime:
    """Binance millisecond epoch → aware UTC datetime (exact: no float rounding)."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


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

E = TypeVar("E")


def _enum(mapping: dict[str, E], value: str, what: str) -> E:
    try:
        return mapping[value]
    except KeyError:
        raise MalformedMessage(f"unknown binance {what} {value!r}") from None


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_TYPES = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}


def order_status(value: str) -> VenueOrderStatus:
    return _enum(_STATUS, value, "order status")


def side(value: str) -> Side:
    return _enum(_SIDES, value, "side")


def order_type(value: str) -> OrderType:
    return _enum(_TYPES, value, "order type")


def time_in_force(value: str) -> TimeInForce:
    return _enum(_TIFS, value, "time in force")


def _price_or_none(price: Decimal) -> Decimal | None:
    # MARKET orders report price "0.00000000"
    return price if price != 0 else None


# -- REST answers ---------------------------------------------------------------------------


def parse_order(order: schemas.Order, *, venue: VenueName, received_at: datetime) -> OrderReport:
    """An order answer (new/query/cancel/open) as an :class:`OrderReport`, with any fills."""
    order_side = side(order.side)
    venue_order_id = VenueOrderId(str(order.orderId))
    if order.origClientOrderId is not None:
        # Cancel answer: ``clientOrderId`` is the cancel request's own id.
        coid = ClientOrderId(order.origClientOrderId)
        cancel_coid: ClientOrderId | None = ClientOrderId(order.clientOrderId)
    else:
        coid = ClientOrderId(order.clientOrderId)
        cancel_coid = None
    venue_ms = order.transactTime or order.updateTime or order.time
    venue_ts = ms_to_utc(venue_ms) if venue_ms else None
    fills = tuple(
        FillReport(
            venue=venue,
            symbol=Symbol(order.symbol),
            trade_id=TradeId(str(f.tradeId)),
            client_order_id=coid,
            venue_order_id=venue_order_id,
            side=order_side,
            quantity=f.qty,
            price=f.price,
            fee=f.commission,
            fee_asset=Asset(f.commissionAsset) if f.commissionAsset else None,
            # FULL answers do not say; a fill in the placing answer took liquidity.
            liquidity=Liquidity.TAKER,
            venue_ts=venue_ts or received_at,
            received_at=received_at,
        )
        for f in order.fills
    )
    quote = order.cummulativeQuoteQty
    return OrderReport(
        venue=venue,
        symbol=Symbol(order.symbol),
        client_order_id=coid,
        venue_order_id=venue_order_id,
        side=order_side,
        type=order_type(order.type),
        status=order_status(order.status),
        quantity=order.origQty,
        limit_price=_price_or_none(order.price),
        filled_quantity=order.executedQty,
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
        symbol=Symbol(trade.symbol),
        trade_id=TradeId(str(trade.id)),
        client_order_id=None,
        venue_order_id=VenueOrderId(str(trade.orderId)),
        side=Side.BUY if trade.isBuyer else Side.SELL,
        quantity=trade.qty,
        price=trade.price,
        fee=trade.commission,
        fee_asset=Asset(trade.commissionAsset) if trade.commissionAsset else None,
        liquidity=Liquidity.MAKER if trade.isMaker else Liquidity.TAKER,
        venue_ts=ms_to_utc(trade.time),
        received_at=received_at,
    )


def parse_account(
    account: schemas.AccountInfo, *, venue: VenueName, received_at: datetime
) -> list[BalanceReport]:
    venue_ts = ms_to_utc(account.updateTime) if account.updateTime else None
    return [
        BalanceReport(
            venue=venue,
            asset=Asset(b.asset),
            free=b.free,
            locked=b.locked,
            venue_ts=venue_ts,
            received_at=received_at,
        )
        for b in account.balances
    ]


def parse_instrument_rules(info: schemas.SymbolInfo) -> InstrumentRules:
    """PRICE_FILTER → tick size and price bounds, LOT_SIZE → step and quantity bounds,
    NOTIONAL (or the older MIN_NOTIONAL) → notional bounds. A 0 bound means "disabled"."""
    filters = {f.filterType: f for f in info.filters}
    price = filters.get("PRICE_FILTER")
    lot = filters.get("LOT_SIZE")
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
    if lot is None or lot.stepSize is None or lot.minQty is None or lot.maxQty is None:
        raise MalformedMessage(f"binance symbol {info.symbol} has no usable LOT_SIZE filter")
    extra = {"status": info.status}
    market_lot = filters.get("MARKET_LOT_SIZE")
    if market_lot is not None and market_lot.maxQty is not None:
        extra["market_max_qty"] = str(market_lot.maxQty)
    max_price = price.maxPrice if price is not None else None
    max_notional = notional.maxNotional if notional is not None else None
    return InstrumentRules(
        symbol=Symbol(info.symbol),
        base_asset=Asset(info.baseAsset),
        quote_asset=Asset(info.quoteAsset),
        tick_size=(price.tickSize or Decimal(0)) if price is not None else Decimal(0),
        step_size=lot.stepSize,
        min_qty=lot.minQty,
        max_qty=lot.maxQty,
        min_notional=(notional.minNotional or Decimal(0)) if notional is not None else Decimal(0),
        max_notional=max_notional if max_notional else None,
        min_price=(price.minPrice or Decimal(0)) if price is not None else Decimal(0),
        max_price=max_price if max_price else None,
        extra=extra,
    )


# -- user data events -----------------------------------------------------------------------

UserReport = OrderReport | FillReport | BalanceReport


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
    if er.orig_client_order_id:
        coid = ClientOrderId(er.orig_client_order_id)
        cancel_coid: ClientOrderId | None = ClientOrderId(er.client_order_id)
    else:
        coid = ClientOrderId(er.client_order_id)
        cancel_coid = None
    symbol = Symbol(er.symbol)
    venue_order_id = VenueOrderId(str(er.order_id))
    venue_ts = ms_to_utc(er.transaction_time)
    out: list[UserReport] = []
    if er.execution_type == "TRADE":
        if er.trade_id < 0:
            raise MalformedMessage("binance executionReport TRADE without a trade id")
        out.append(
            FillReport(
                venue=venue,
                symbol=symbol,
                trade_id=TradeId(str(er.trade_id)),
                client_order_id=coid,
                venue_order_id=venue_order_id,
                side=order_side,
                quantity=er.last_qty,
                price=er.last_price,
                fee=er.commission,
                fee_asset=Asset(er.commission_asset) if er.commission_asset else None,
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
            quantity=er.quantity,
            limit_price=_price_or_none(er.price),
            filled_quantity=er.cumulative_qty,
            cumulative_quote=er.cumulative_quote_qty,
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
    venue_ts = ms_to_utc(evt.last_update_time)
    return [
        BalanceReport(
            venue=venue,
            asset=Asset(b.asset),
            free=b.free,
            locked=b.locked,
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
                "binance_balance_update",
                venue=venue,
                asset=upd.asset,
                delta=str(upd.delta),
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
    raise MalformedMessage(f"unknown binance user event type {kind!r}", raw=raw)


# -- market data ----------------------------------------------------------------------------

_COMBINED_DECODER = msgspec.json.Decoder(schemas.CombinedFrame)
_BOOK_DECODER = msgspec.json.Decoder(schemas.BookTicker)


class _BookTickerFrame(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream ``bookTicker`` frame in one pass (the payload is not a ``Raw`` to
    decode a second time). ``gc=False``: it holds no containers, so the collector need not
    track the hundreds of thousands of these a busy stream allocates."""

    stream: str
    data: schemas.BookTicker


_BOOK_FRAME_DECODER = msgspec.json.Decoder(_BookTickerFrame)
#: the stream name sits in the frame's first bytes: ``{"stream":"<symbol>@bookTicker","data":``
_BOOK_HINT = b'@bookTicker"'
_HINT_WINDOW = 64
_TRADE_DECODER = msgspec.json.Decoder(schemas.TradeEvent)
_KLINE_DECODER = msgspec.json.Decoder(schemas.KlineEvent)


def parse_book_ticker(bt: schemas.BookTicker, *, received_at: datetime) -> Quote:
    # msgspec has already checked every field's type (Decimal prices and sizes, int id).
    return Quote.from_decoded(
        Symbol(bt.symbol),
        bt.bid_price,
        bt.bid_qty,
        bt.ask_price,
        bt.ask_qty,
        None,  # the spot bookTicker carries no timestamp
        received_at,
        bt.update_id,
    )


def parse_trade(te: schemas.TradeEvent, *, received_at: datetime) -> Trade:
    return Trade(
        symbol=Symbol(te.symbol),
        trade_id=TradeId(str(te.trade_id)),
        price=te.price,
        quantity=te.quantity,
        # buyer is the maker → the seller crossed the spread
        aggressor=Side.SELL if te.buyer_is_maker else Side.BUY,
        venue_ts=ms_to_utc(te.trade_time),
        received_at=received_at,
    )


def parse_kline(ke: schemas.KlineEvent, *, received_at: datetime) -> Bar:
    k = ke.kline
    return Bar(
        symbol=Symbol(k.symbol),
        interval=k.interval,
        open_time=ms_to_utc(k.start_time),
        close_time=ms_to_utc(k.close_time),
        open=k.open,
        high=k.high,
        low=k.low,
        close=k.close,
        volume=k.volume,
        closed=k.closed,
        received_at=received_at,
    )


def decode_market_frame(raw: bytes, *, received_at: datetime) -> MarketEvent | None:
    """One combined-stream frame → a market event. ``None`` for a subscription answer.

    Raises :class:`MalformedMessage` for anything else it cannot read.
    """
    if raw.find(_BOOK_HINT, 0, _HINT_WINDOW) != -1:
        # The hot path: most market-data frames are quotes. The hint only picks the decoder;
        # the decoded stream name decides, and anything else takes the general path below.
        try:
            book = _BOOK_FRAME_DECODER.decode(raw)
        except msgspec.DecodeError:
            pass
        else:
            if book.stream.endswith("@bookTicker"):
                return parse_book_ticker(book.data, received_at=received_at)
    try:
        if raw.lstrip().startswith(b'{"result"'):
            return None
        frame = _COMBINED_DECODER.decode(raw)
        stream = frame.stream
        data = bytes(frame.data)
        if stream.endswith("@bookTicker"):
            return parse_book_ticker(_BOOK_DECODER.decode(data), received_at=received_at)
        if stream.endswith("@trade"):
            return parse_trade(_TRADE_DECODER.decode(data), received_at=received_at)
        if "@kline_" in stream:
            return parse_kline(_KLINE_DECODER.decode(data), received_at=received_at)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"undecodable binance market frame: {exc}", raw=raw) from None
    raise MalformedMessage(f"unexpected binance stream {stream!r}", raw=raw)


def stream_names(symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
    """``<symbol>@<channel>`` names (symbols lowercase, as the venue requires)."""
    return [f"{s.lower()}@{c}" for s in symbols for c in channels]
