"""Kalshi market data: order books from ``orderbook_delta``, public trades from ``trade``.

The book channel sends a snapshot of each market, then deltas, all numbered by ``seq`` within
the subscription (``sid``). The books are kept by :class:`engine.domain.orderbook.SequencedBooks`;
a gap (a lost message, or a delta the book cannot take) is logged, counted
(``tradectl_orderbook_gaps_total``) and answered by unsubscribing and subscribing again, which
brings fresh snapshots. Every change of a market's touch is a :class:`Quote` whose sizes are the
depth at the best levels (what the liquidity check takes a fraction of). We subscribe with
``use_yes_price``, so NO levels arrive at YES prices: they are the YES asks.

Trades feed the rolling traded volume of the liquidity check (``max_volume_fraction``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal

import msgspec
import structlog

from engine.domain.market import MarketEvent, Quote, Trade
from engine.domain.orderbook import Outcome, SequencedBooks, Touch
from engine.domain.types import Side, Symbol, TradeId, VenueName
from engine.exceptions import MalformedMessage
from engine.venues.base import StreamReconnected
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.kalshi import parsing, schemas
from engine.venues.kalshi.stream import KalshiStream
from engine.venues.metrics import MARKET_STREAM, VenueMetrics
from engine.venues.validation import finite, ms_timestamp, non_empty, non_negative, positive

log = structlog.get_logger(__name__)

BOOK = "orderbook_delta"
TRADES = "trade"
CHANNELS = (BOOK, TRADES)
#: the subscribe parameters of the book: NO levels at YES prices
PARAMS = {"use_yes_price": True}

_SNAPSHOT = msgspec.json.Decoder(schemas.WsOrderbookSnapshot)
_DELTA = msgspec.json.Decoder(schemas.WsOrderbookDelta)
_TRADE = msgspec.json.Decoder(schemas.WsTrade)
_SUBSCRIBED = msgspec.json.Decoder(schemas.WsSubscribed)
_SIDES = {"yes": Side.BUY, "no": Side.SELL}
_TAKER = {"bid": Side.BUY, "ask": Side.SELL, "yes": Side.BUY, "no": Side.SELL}


def parse_trade(msg: schemas.WsTrade, *, received_at: datetime) -> Trade:
    side = msg.taker_book_side or msg.taker_outcome_side or msg.taker_side
    return Trade(
        symbol=Symbol(non_empty(msg.market_ticker, "market_ticker")),
        trade_id=TradeId(non_empty(msg.trade_id, "trade_id")),
        price=parsing.price(msg.yes_price_dollars, "yes_price_dollars"),
        quantity=positive(msg.count_fp, "count_fp"),
        aggressor=None if side is None else _TAKER.get(side),
        venue_ts=ms_timestamp(msg.ts_ms, "ts_ms"),
        received_at=received_at,
    )


def _levels(rows: list[tuple[Decimal, Decimal]], what: str) -> list[tuple[Decimal, Decimal]]:
    return [(parsing.price(p, f"{what} price"), non_negative(c, f"{what} count")) for p, c in rows]


class KalshiMarketData:
    """Frames of one market-stream connection into quotes and trades."""

    def __init__(
        self,
        *,
        venue: VenueName,
        metrics: VenueMetrics,
        now: Callable[[], datetime],
    ) -> None:
        self._venue = venue
        self._metrics = metrics
        metrics.orderbook_gap(0)
        self._now = now
        self.books = SequencedBooks()
        #: the touch last published per market: a delta below it is no new quote
        self._published: dict[str, Touch] = {}
        #: resubscriptions asked for (after gaps)
        self.resubscribes = 0
        #: the sequence number before the frame at hand (what a gap expected after)
        self._last_seq: int | None = None

    async def events(self, stream: KalshiStream) -> AsyncIterator[MarketEvent]:
        async for frame in stream.frames():
            if isinstance(frame, StreamReconnected):
                continue
            followed = self.books.sid
            event = self.on_frame(frame)
            if followed is not None and self.books.sid is None:
                await self._resubscribe(stream, followed)
            if event is not None:
                yield event

    async def _resubscribe(self, stream: KalshiStream, sid: int) -> None:
        self.resubscribes += 1
        # the old subscription's messages still in flight are ignored (its sid is dropped)
        sent = await stream.send("unsubscribe", {"sids": [sid]})
        if sent:
            await stream.send("subscribe", stream.subscribe_params([BOOK]))

    def on_frame(self, frame: schemas.WsEnvelope) -> MarketEvent | None:
        """The quote or trade a frame brings, if any (books are updated in passing)."""
        self._last_seq = self.books.last_seq
        try:
            if frame.type == "subscribed":
                confirmed = _SUBSCRIBED.decode(frame.msg)
                if confirmed.channel == BOOK:
                    self.books.follow(confirmed.sid)
                    self._published.clear()
                return None
            if frame.type == TRADES:
                return parse_trade(_TRADE.decode(frame.msg), received_at=self._now())
            if frame.type == "orderbook_snapshot":
                return self._snapshot(frame)
            if frame.type == "orderbook_delta":
                return self._delta(frame)
        except (msgspec.DecodeError, MalformedMessage) as exc:
            record_malformed(self._metrics, MARKET_STREAM, bytes(frame.msg), skip_reason(exc))
        return None

    def _snapshot(self, frame: schemas.WsEnvelope) -> Quote | None:
        msg = _SNAPSHOT.decode(frame.msg)
        sid, seq = _numbered(frame)
        outcome = self.books.snapshot(
            sid,
            seq,
            msg.market_ticker,
            _levels(msg.yes_dollars_fp, "yes_dollars_fp"),
            _levels(msg.no_dollars_fp, "no_dollars_fp"),
        )
        return self._after(outcome, msg.market_ticker, sid, seq, venue_ts=None)

    def _delta(self, frame: schemas.WsEnvelope) -> Quote | None:
        msg = _DELTA.decode(frame.msg)
        sid, seq = _numbered(frame)
        side = _SIDES.get(msg.side)
        if side is None:
            raise MalformedMessage(f"orderbook_delta side {msg.side!r}")
        outcome = self.books.delta(
            sid,
            seq,
            msg.market_ticker,
            side,
            parsing.price(msg.price_dollars, "price_dollars"),
            finite(msg.delta_fp, "delta_fp"),
        )
        venue_ts = None if msg.ts_ms is None else ms_timestamp(msg.ts_ms, "ts_ms")
        return self._after(outcome, msg.market_ticker, sid, seq, venue_ts=venue_ts)

    def _after(
        self, outcome: Outcome, ticker: str, sid: int, seq: int, *, venue_ts: datetime | None
    ) -> Quote | None:
        if outcome is Outcome.GAP:
            self._gap(ticker, sid, seq)
            return None
        if outcome is Outcome.IGNORED:
            return None
        book = self.books.book(ticker)
        touch = None if book is None else book.touch()
        if touch is None or self._published.get(ticker) == touch:
            return None
        self._published[ticker] = touch
        return Quote(
            symbol=Symbol(ticker),
            bid=touch.bid,
            bid_size=touch.bid_size,
            ask=touch.ask,
            ask_size=touch.ask_size,
            venue_ts=venue_ts,
            received_at=self._now(),
        )

    def _gap(self, ticker: str, sid: int, received: int) -> None:
        self._metrics.orderbook_gap()
        self._published.clear()
        log.warning(
            "kalshi.orderbook_gap",
            venue=self._venue,
            market=ticker,
            sid=sid,
            expected_seq=None if self._last_seq is None else self._last_seq + 1,
            received_seq=received,
            action="resubscribe",
        )


def _numbered(frame: schemas.WsEnvelope) -> tuple[int, int]:
    if frame.sid is None or frame.seq is None:
        raise MalformedMessage(f"{frame.type} without sid or seq")
    return frame.sid, frame.seq
