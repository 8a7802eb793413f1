"""Kalshi settlements: ``GET /portfolio/settlements`` (what the account was paid, per market) and
the ``market_lifecycle_v2`` channel (markets closing, determined, settled) as
:class:`SettlementReport` and :class:`MarketLifecycle`.

A YES contract pays ``value`` cents (100 for a ``yes`` result, 0 for ``no``); only net positions
settle, so the count held is ``yes_count - no_count``. A ``scalar`` settlement (a value between
0 and 1) is not a result the ledger knows: it is logged and counted as skipped, and the balance
check then shows the payout as drift for a human to look at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from engine.domain.types import Symbol, VenueName
from engine.exceptions import MalformedMessage
from engine.venues.base import MarketLifecycle, SettlementReport, StreamReconnected
from engine.venues.binance.parsing import record_malformed, skip_reason
from engine.venues.kalshi import schemas
from engine.venues.kalshi.parsing import parse_time, price
from engine.venues.kalshi.rest import KalshiRestClient
from engine.venues.kalshi.stream import KalshiStream
from engine.venues.metrics import REST, USER_STREAM, VenueMetrics
from engine.venues.validation import finite, non_empty

CHANNEL = "market_lifecycle_v2"
#: the ``stream`` label of the lifecycle connection (readiness waits for market and user only)
LIFECYCLE = "lifecycle"
_PAYOUTS = {"yes": Decimal(1), "no": Decimal(0)}
_LIFECYCLE = msgspec.json.Decoder(schemas.WsMarketLifecycle)


def parse_settlement(
    s: schemas.Settlement, *, venue: VenueName, received_at: datetime
) -> SettlementReport:
    ticker = non_empty(s.ticker, "ticker")
    if s.market_result not in _PAYOUTS:
        raise MalformedMessage(
            f"settlement of {ticker}: result {s.market_result!r} is not yes/no (a scalar "
            "settlement is not supported)"
        )
    payout = _PAYOUTS[s.market_result]
    if s.value is not None:
        if not 0 <= s.value <= 100:
            raise MalformedMessage(f"settlement of {ticker}: value {s.value} is outside 0..100")
        payout = Decimal(s.value) / 100
    settled_at = parse_time(s.settled_time, "settled_time")
    if settled_at is None:
        raise MalformedMessage(f"settlement of {ticker} has no settled_time")
    return SettlementReport(
        venue=venue,
        symbol=Symbol(ticker),
        result=s.market_result,
        payout=payout,
        settled_at=settled_at,
        received_at=received_at,
        quantity=finite(s.yes_count_fp, "yes_count_fp") - finite(s.no_count_fp, "no_count_fp"),
    )


def parse_lifecycle(
    msg: schemas.WsMarketLifecycle, *, venue: VenueName, received_at: datetime
) -> MarketLifecycle:
    ticker = non_empty(msg.market_ticker, "market_ticker")
    event = non_empty(msg.event_type, "event_type")
    seconds = msg.settled_ts or msg.determination_ts
    at = received_at if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)
    result = msg.result if msg.result in _PAYOUTS else None
    payout: Decimal | None = None
    if msg.settlement_value is not None:
        payout = price(msg.settlement_value, "settlement_value")
    elif result is not None:
        payout = _PAYOUTS[result]
    return MarketLifecycle(
        venue=venue, symbol=Symbol(ticker), event=event, at=at, result=result, payout=payout
    )


async def settlements_since(
    rest: KalshiRestClient,
    since: datetime | None,
    *,
    venue: VenueName,
    metrics: VenueMetrics,
    now: Callable[[], datetime],
) -> Sequence[SettlementReport]:
    """Every settlement of the account at or after ``since`` (all pages), oldest first."""
    min_ts = None if since is None else int(since.timestamp())
    reports: list[SettlementReport] = []
    cursor = ""
    while True:
        page = await rest.settlements(min_ts=min_ts, cursor=cursor)
        for s in page.settlements:
            try:
                reports.append(parse_settlement(s, venue=venue, received_at=now()))
            except MalformedMessage as exc:
                record_malformed(metrics, REST, repr(s), skip_reason(exc))
        if not page.cursor or not page.settlements:
            break
        cursor = page.cursor
    return sorted(reports, key=lambda r: r.settled_at)


async def lifecycle_events(
    stream: KalshiStream,
    *,
    venue: VenueName,
    metrics: VenueMetrics,
    now: Callable[[], datetime],
) -> AsyncIterator[MarketLifecycle | StreamReconnected]:
    async for frame in stream.frames():
        if isinstance(frame, StreamReconnected):
            yield frame
            continue
        if frame.type != CHANNEL or not frame.msg:
            continue
        try:
            yield parse_lifecycle(_LIFECYCLE.decode(frame.msg), venue=venue, received_at=now())
        except (msgspec.DecodeError, MalformedMessage) as exc:
            record_malformed(metrics, USER_STREAM, bytes(frame.msg), skip_reason(exc))
