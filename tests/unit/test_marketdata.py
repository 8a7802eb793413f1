from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.domain.market import MarketEvent, Quote
from engine.domain.types import Symbol, VenueName
from engine.exceptions import AuthFailed
from engine.marketdata.bars import BarBuilder, floor_time, interval_name, parse_interval
from engine.marketdata.conflator import Conflator
from engine.marketdata.feed import MarketDataFeed
from tests.bars import BTC, T0
from tests.bars import flat_bar as bar
from tests.helpers import eventually

ETH = Symbol("ETHUSDT")


def quote(
    price: str,
    *,
    at: datetime = T0,
    symbol: Symbol = BTC,
    seq: int | None = None,
    received: datetime | None = None,
) -> Quote:
    p = Decimal(price)
    return Quote(
        symbol=symbol,
        bid=p - Decimal("0.5"),
        bid_size=Decimal(1),
        ask=p + Decimal("0.5"),
        ask_size=Decimal(1),
        venue_ts=at,
        received_at=received or at,
        sequence=seq,
    )


# --- conflation -----------------------------------------------------------------------------


async def test_slow_consumer_sees_only_the_latest_quote_but_every_closed_bar() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("slow", [BTC])
    for i in range(100):
        conflator.publish(quote(str(100 + i), seq=i + 1))
        if i % 10 == 0:
            conflator.publish(bar(i))
    update = await sub.next()
    assert update.quotes == {BTC}
    assert conflator.quote(BTC) == quote("199", seq=100)
    assert [b.open_time for b in update.closed_bars] == [
        bar(i).open_time for i in range(0, 100, 10)
    ]
    assert sub.take().empty


async def test_consumer_is_woken_only_for_its_symbols() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("eth-only", [ETH])
    conflator.publish(quote("100", symbol=BTC))
    assert not sub.pending
    conflator.publish(quote("10", symbol=ETH))
    assert (await asyncio.wait_for(sub.next(), 1)).quotes == {ETH}


async def test_waiting_consumer_wakes_on_publish() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("waiter", [BTC])
    waiter = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    conflator.publish(quote("101"))
    assert (await asyncio.wait_for(waiter, 1)).quotes == {BTC}


def test_bar_only_consumer_is_woken_by_closed_bars_not_quotes() -> None:
    conflator = Conflator()
    conflator.publish(quote("100"))  # known before it subscribed: still no wake-up
    sub = conflator.subscribe("bars-only", [BTC], quotes=False)
    conflator.publish(quote("101"))
    assert not sub.pending
    conflator.publish(bar(0))
    update = sub.take()
    assert update.quotes == frozenset()
    assert [b.open_time for b in update.closed_bars] == [bar(0).open_time]
    assert conflator.quote(BTC) == quote("101")  # the latest quote is there to read


def test_unsubscribed_bar_only_consumer_is_forgotten() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("bars-only", [BTC], quotes=False)
    conflator.unsubscribe("bars-only")
    conflator.publish(bar(0))
    assert not sub.pending


def test_bar_backlog_is_bounded_and_drops_are_counted() -> None:
    conflator = Conflator(max_bar_backlog=3)
    sub = conflator.subscribe("behind", [BTC])
    for i in range(5):
        conflator.publish(bar(i))
    update = sub.take()
    assert [b.open_time for b in update.closed_bars] == [bar(i).open_time for i in (2, 3, 4)]
    assert update.dropped_bars == 2
    assert sub.dropped_bars == 2


def test_unclosed_bars_update_the_view_without_waking_bar_consumers() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("bars", [BTC])
    forming = dataclasses.replace(bar(0), closed=False)
    conflator.publish(forming)
    assert conflator.bar(BTC, "1m") == forming
    assert not sub.pending


def test_bar_interval_filter_delivers_only_that_interval() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("5m-only", [BTC], bar_interval="5m")
    conflator.publish(bar(0))
    assert not sub.pending


def test_late_subscriber_starts_from_the_known_quote() -> None:
    conflator = Conflator()
    conflator.publish(quote("100"))
    sub = conflator.subscribe("late", [BTC])
    assert sub.take().quotes == {BTC}


# --- staleness and gaps ---------------------------------------------------------------------


def test_staleness_is_measured_from_receipt_time_not_venue_time() -> None:
    conflator = Conflator()
    received = T0 + timedelta(seconds=3)
    conflator.publish(quote("100", at=T0, received=received))
    now = T0 + timedelta(seconds=5)
    assert conflator.age(BTC, now) == timedelta(seconds=2)
    assert not conflator.is_stale(BTC, now, timedelta(seconds=2))
    assert conflator.is_stale(BTC, now + timedelta(milliseconds=1), timedelta(seconds=2))


def test_a_symbol_never_seen_is_stale() -> None:
    conflator = Conflator()
    assert conflator.age(ETH, T0) is None
    assert conflator.is_stale(ETH, T0, timedelta(days=1))


def test_sequence_gap_is_counted_and_reported() -> None:
    gaps: list[tuple[Symbol, int, int]] = []
    conflator = Conflator(on_gap=lambda s, expected, got: gaps.append((s, expected, got)))
    conflator.publish(quote("100", seq=1))
    conflator.publish(quote("101", seq=2))
    conflator.publish(quote("105", seq=6))
    assert conflator.gaps(BTC) == 1
    assert gaps == [(BTC, 3, 6)]
    assert conflator.quote(BTC) == quote("105", seq=6)


def test_out_of_order_quote_does_not_move_the_view_back() -> None:
    conflator = Conflator()
    conflator.publish(quote("105", seq=6))
    conflator.publish(quote("101", seq=2))
    conflator.publish(quote("105", seq=6))
    assert conflator.quote(BTC) == quote("105", seq=6)
    assert conflator.out_of_order(BTC) == 2
    assert conflator.gaps(BTC) == 0


def test_gap_detection_can_be_off_while_ordering_is_still_enforced() -> None:
    conflator = Conflator(detect_gaps=False)
    conflator.publish(quote("100", seq=10))
    conflator.publish(quote("101", seq=25))
    conflator.publish(quote("99", seq=20))
    assert conflator.gaps(BTC) == 0
    assert conflator.out_of_order(BTC) == 1
    assert conflator.quote(BTC) == quote("101", seq=25)


def test_quotes_without_sequence_are_never_gaps() -> None:
    conflator = Conflator()
    conflator.publish(quote("100"))
    conflator.publish(quote("101"))
    assert conflator.gaps(BTC) == 0
    assert conflator.quote(BTC) == quote("101")


# --- bars from quotes -----------------------------------------------------------------------


def test_interval_names_round_trip() -> None:
    for text in ("5s", "90s", "1m", "15m", "1h", "4h", "1d"):
        assert interval_name(parse_interval(text)) == text
    assert interval_name(timedelta(seconds=120)) == "2m"
    for bad in ("0m", "1w", "m", "1.5m", ""):
        with pytest.raises(ValueError, match="interval"):
            parse_interval(bad)


def test_bar_builder_aggregates_mids_and_emits_when_the_interval_closes() -> None:
    builder = BarBuilder(BTC, timedelta(minutes=1))
    assert builder.on_quote(quote("100", at=T0 + timedelta(seconds=1))) is None
    assert builder.on_quote(quote("104", at=T0 + timedelta(seconds=20))) is None
    assert builder.on_quote(quote("98", at=T0 + timedelta(seconds=40))) is None
    assert builder.on_quote(quote("101", at=T0 + timedelta(seconds=59))) is None
    closing = quote("120", at=T0 + timedelta(minutes=1, seconds=2))
    closed = builder.on_quote(closing)
    assert closed is not None
    assert (closed.open, closed.high, closed.low, closed.close) == (
        Decimal(100),
        Decimal(104),
        Decimal(98),
        Decimal(101),
    )
    assert closed.open_time == T0
    assert closed.close_time == T0 + timedelta(minutes=1)
    assert closed.closed
    assert closed.interval == "1m"
    assert closed.received_at == closing.received_at
    current = builder.current(T0)
    assert current is not None
    assert current.open == Decimal(120)
    assert not current.closed


def test_bar_builder_ignores_quotes_older_than_the_bar_it_builds() -> None:
    builder = BarBuilder(BTC, timedelta(minutes=1))
    builder.on_quote(quote("100", at=T0 + timedelta(minutes=1)))
    assert builder.on_quote(quote("50", at=T0 + timedelta(seconds=30))) is None
    current = builder.current(T0)
    assert current is not None
    assert current.low == Decimal(100)


def test_quiet_market_still_closes_its_bar_and_never_reopens_it() -> None:
    conflator = Conflator()
    conflator.build_bars(BTC, timedelta(minutes=1))
    sub = conflator.subscribe("sma", [BTC], bar_interval="1m")
    conflator.publish(quote("100", at=T0 + timedelta(seconds=5)))
    assert conflator.close_due_bars(T0 + timedelta(seconds=59)) == []
    closed = conflator.close_due_bars(T0 + timedelta(minutes=1))
    assert [b.open_time for b in closed] == [T0]
    conflator.publish(quote("90", at=T0 + timedelta(seconds=58)))  # late for a closed bar
    assert conflator.close_due_bars(T0 + timedelta(minutes=5)) == []
    assert [b.close for b in sub.take().closed_bars] == [Decimal(100)]


def test_conflator_builds_bars_from_published_quotes() -> None:
    conflator = Conflator()
    conflator.build_bars(BTC, timedelta(seconds=5))
    sub = conflator.subscribe("sma", [BTC])
    for i in range(12):
        conflator.publish(quote(str(100 + i), at=T0 + timedelta(seconds=i)))
    bars = sub.take().closed_bars
    assert [b.open_time for b in bars] == [T0, T0 + timedelta(seconds=5)]
    assert [b.close for b in bars] == [Decimal(104), Decimal(109)]
    assert floor_time(T0 + timedelta(seconds=7), timedelta(seconds=5)) == bars[1].open_time


# --- the feed task --------------------------------------------------------------------------


class FlakyVenue:
    """A venue whose market stream yields a few quotes and then breaks, ``failures`` times."""

    name = VenueName("flaky")

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.streams_opened = 0
        self.closed_streams = 0

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        self.streams_opened += 1
        return self._stream(self.streams_opened)

    async def _stream(self, attempt: int) -> AsyncIterator[MarketEvent]:
        try:
            yield quote(str(100 + attempt), seq=1)
            if attempt <= self.failures:
                raise ConnectionResetError(f"stream {attempt} reset")
            await asyncio.Event().wait()  # a healthy stream that stays quiet
        finally:
            self.closed_streams += 1


async def test_feed_restarts_the_stream_after_it_raises() -> None:
    venue = FlakyVenue(failures=3)
    conflator = Conflator()
    feed = MarketDataFeed(
        venue,  # type: ignore[arg-type]
        [BTC],
        conflator,
        backoff_initial=0.001,
        backoff_max=0.002,
        poll_interval=3600,
    )
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: venue.streams_opened == 4 and feed.connected)
        assert feed.restarts == 3
        assert feed.last_error == "ConnectionResetError: stream 3 reset"
        # each new stream restarts its sequence at 1: it must not be discarded as old
        assert conflator.quote(BTC) == quote("104", seq=1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert venue.closed_streams == 4


class DeadVenue:
    name = VenueName("dead")

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        raise OSError("connection refused")


async def test_rest_poller_feeds_quotes_while_the_stream_is_down() -> None:
    conflator = Conflator()
    sub = conflator.subscribe("strategy", [BTC])
    calls: list[Symbol] = []

    async def poll(symbol: Symbol) -> Quote:
        calls.append(symbol)
        if len(calls) == 1:
            raise TimeoutError("REST timeout")
        return quote("99", received=datetime.now(UTC))

    feed = MarketDataFeed(
        DeadVenue(),  # type: ignore[arg-type]
        [BTC],
        conflator,
        poller=poll,
        poll_interval=0.001,
        backoff_initial=0.01,
        backoff_max=0.01,
    )
    task = asyncio.create_task(feed.run())
    try:
        update = await asyncio.wait_for(sub.next(), 5)
        assert update.quotes == {BTC}
        assert conflator.quote(BTC) is not None
        assert feed.poll_failures == 1
        assert feed.polls >= 1
        assert feed.restarts >= 1
        assert feed.last_error == "OSError: connection refused"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class QuietVenue:
    """Streams one quote, then stays connected and silent."""

    name = VenueName("quiet")

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[MarketEvent]:
        yield quote("100", at=T0 + timedelta(seconds=5))
        await asyncio.Event().wait()


async def test_feed_closes_bars_of_a_quiet_market_on_its_clock() -> None:
    conflator = Conflator()
    conflator.build_bars(BTC, timedelta(minutes=1))
    sub = conflator.subscribe("sma", [BTC], bar_interval="1m")
    feed = MarketDataFeed(
        QuietVenue(),  # type: ignore[arg-type]
        [BTC],
        conflator,
        poll_interval=0.001,
        clock=lambda: T0 + timedelta(minutes=1, seconds=1),
    )
    task = asyncio.create_task(feed.run())
    try:
        update = await asyncio.wait_for(sub.next(), 5)
        while not update.closed_bars:
            update = await asyncio.wait_for(sub.next(), 5)
        assert [b.open_time for b in update.closed_bars] == [T0]
        assert update.closed_bars[0].received_at == T0 + timedelta(minutes=1, seconds=1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class RefusingVenue:
    """Refuses our credentials on the first ``refusals`` streams, then streams a quote."""

    name = VenueName("refusing")

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.streams_opened = 0

    def market_stream(self, symbols: Sequence[Symbol]) -> AsyncIterator[MarketEvent]:
        self.streams_opened += 1
        return self._stream(self.streams_opened)

    async def _stream(self, attempt: int) -> AsyncIterator[MarketEvent]:
        if attempt <= self.refusals:
            raise AuthFailed("market stream refused our credentials (HTTP 401)", http_status=401)
        yield quote("101", seq=1)
        await asyncio.Event().wait()


async def test_a_refused_market_stream_reports_the_auth_failure_and_retries_slowly() -> None:
    venue = RefusingVenue(refusals=2)
    reported: list[AuthFailed] = []

    async def on_auth_failed(exc: AuthFailed) -> None:
        reported.append(exc)
        if len(reported) == 1:
            raise OSError("the ledger is away")  # a halt that cannot be written is retried

    conflator = Conflator()
    feed = MarketDataFeed(
        venue,  # type: ignore[arg-type]
        [BTC],
        conflator,
        backoff_initial=0.001,
        backoff_max=0.002,
        poll_interval=3600,
        on_auth_failed=on_auth_failed,
        auth_retry_s=0.01,
    )
    task = asyncio.create_task(feed.run())
    try:
        # the key repaired: the third stream brings the data back without a restart
        await eventually(lambda: conflator.quote(BTC) is not None)
        assert [e.http_status for e in reported] == [401, 401]
        assert feed.restarts == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
