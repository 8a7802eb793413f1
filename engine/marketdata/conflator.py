"""The conflated latest view of market data, shared by every strategy task.

Market data is never queued per message: a publish overwrites the latest quote of its symbol and
*wakes* the consumers interested in it (one :class:`asyncio.Event` each). A slow consumer therefore
skips intermediate quotes and always reads the newest one. Closed bars are different: a strategy
deciding on bars must see every one of them, so each consumer keeps a small backlog of closed
bars, bounded by ``max_bar_backlog``; on overflow the oldest bar is dropped, counted and logged (a
consumer that far behind has a problem an operator must see, not a queue that grows without end).

The conflator also tracks, per symbol, the receipt time of the newest event (staleness) and the
venue sequence numbers of quotes (gaps, and out-of-order quotes that must not overwrite newer ones).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from engine.domain.market import Bar, MarketEvent, Quote, Trade
from engine.domain.types import Symbol
from engine.marketdata.bars import BarBuilder
from engine.marketdata.volume import VolumeTracker

log = structlog.get_logger(__name__)

#: called as ``on_gap(symbol, expected_sequence, received_sequence)``
GapHandler = Callable[[Symbol, int, int], None]

DEFAULT_MAX_BAR_BACKLOG = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """What changed for one consumer since it last looked.

    ``quotes`` names the symbols whose latest quote changed (read the quotes themselves from the
    conflator: they are the newest, not the ones that woke the consumer); ``closed_bars`` holds
    every closed bar, oldest first, unless some were dropped (``dropped_bars``).
    """

    quotes: frozenset[Symbol]
    closed_bars: tuple[Bar, ...]
    dropped_bars: int = 0

    @property
    def empty(self) -> bool:
        return not self.quotes and not self.closed_bars


class Subscription:
    """One consumer's wake-up and its bounded backlog of closed bars."""

    __slots__ = (
        "_bars",
        "_dirty",
        "_dropped_since_take",
        "_wakeup",
        "bar_interval",
        "consumer",
        "dropped_bars",
        "max_bar_backlog",
        "symbols",
    )

    def __init__(
        self,
        consumer: str,
        symbols: frozenset[Symbol],
        *,
        bar_interval: str | None,
        max_bar_backlog: int,
    ) -> None:
        self.consumer = consumer
        self.symbols = symbols
        #: only closed bars of this interval are delivered; ``None`` delivers every interval
        self.bar_interval = bar_interval
        self.max_bar_backlog = max_bar_backlog
        self._wakeup = asyncio.Event()
        self._dirty: set[Symbol] = set()
        self._bars: deque[Bar] = deque()
        #: total closed bars dropped because this consumer fell too far behind
        self.dropped_bars = 0
        self._dropped_since_take = 0

    def _quote_changed(self, symbol: Symbol) -> None:
        self._dirty.add(symbol)
        self._wakeup.set()

    def _bar_closed(self, bar: Bar) -> None:
        if self.bar_interval is not None and bar.interval != self.bar_interval:
            return
        if len(self._bars) >= self.max_bar_backlog:
            lost = self._bars.popleft()
            self.dropped_bars += 1
            self._dropped_since_take += 1
            log.warning(
                "marketdata.bar_dropped",
                consumer=self.consumer,
                symbol=lost.symbol,
                bar_open=lost.open_time.isoformat(),
                max_backlog=self.max_bar_backlog,
                dropped_total=self.dropped_bars,
            )
        self._bars.append(bar)
        self._wakeup.set()

    @property
    def pending(self) -> bool:
        return bool(self._dirty or self._bars)

    def take(self) -> Update:
        """Everything pending, without waiting; an empty update when nothing is."""
        self._wakeup.clear()
        update = Update(
            quotes=frozenset(self._dirty),
            closed_bars=tuple(self._bars),
            dropped_bars=self._dropped_since_take,
        )
        self._dirty.clear()
        self._bars.clear()
        self._dropped_since_take = 0
        return update

    async def next(self) -> Update:
        """Wait until something changed for this consumer and return it."""
        while not self.pending:
            await self._wakeup.wait()
            self._wakeup.clear()
        return self.take()


class Conflator:
    """Latest quote / bar / trade per symbol, staleness, gaps, and consumer wake-ups."""

    def __init__(
        self,
        *,
        max_bar_backlog: int = DEFAULT_MAX_BAR_BACKLOG,
        on_gap: GapHandler | None = None,
        detect_gaps: bool = True,
    ) -> None:
        """``detect_gaps=False`` keeps the ordering check (an older sequence never replaces a
        newer quote) but does not count skipped numbers: for venues whose quote sequence is a
        book update id that skips by design, like Binance's bookTicker ``u``."""
        if max_bar_backlog < 1:
            raise ValueError(f"max_bar_backlog must be >= 1, got {max_bar_backlog}")
        self.max_bar_backlog = max_bar_backlog
        self._on_gap = on_gap
        self._detect_gaps = detect_gaps
        self._quotes: dict[Symbol, Quote] = {}
        self._bars: dict[tuple[Symbol, str], Bar] = {}
        self._trades: dict[Symbol, Trade] = {}
        self._received: dict[Symbol, datetime] = {}
        self._sequence: dict[Symbol, int] = {}
        self._gaps: dict[Symbol, int] = {}
        self._out_of_order: dict[Symbol, int] = {}
        self._subs_by_symbol: dict[Symbol, list[Subscription]] = {}
        #: the subscriptions woken by a symbol's quotes (a bar-only consumer is not in it)
        self._quote_subs_by_symbol: dict[Symbol, list[Subscription]] = {}
        self._builders: dict[Symbol, list[BarBuilder]] = {}
        self._subs: dict[str, Subscription] = {}
        #: rolling traded volume per symbol (the liquidity check's input)
        self.volumes = VolumeTracker()

    # --- consumers -----------------------------------------------------------------------

    def subscribe(
        self,
        consumer: str,
        symbols: Iterable[Symbol],
        *,
        bar_interval: str | None = None,
        max_bar_backlog: int | None = None,
        quotes: bool = True,
    ) -> Subscription:
        """``quotes=False``: woken by closed bars only, never by a quote (a strategy deciding
        once a bar reads the latest quotes when it decides; hundreds of them woken by every
        quote of their symbols were most of an idle engine's CPU)."""
        if consumer in self._subs:
            raise ValueError(f"consumer {consumer!r} is already subscribed")
        wanted = frozenset(symbols)
        if not wanted:
            raise ValueError(f"consumer {consumer!r} subscribed to no symbol")
        sub = Subscription(
            consumer,
            wanted,
            bar_interval=bar_interval,
            max_bar_backlog=max_bar_backlog or self.max_bar_backlog,
        )
        self._subs[consumer] = sub
        for symbol in wanted:
            self._subs_by_symbol.setdefault(symbol, []).append(sub)
            if not quotes:
                continue
            self._quote_subs_by_symbol.setdefault(symbol, []).append(sub)
            # A consumer that arrives after data is already known starts from it at once.
            if symbol in self._quotes:
                sub._quote_changed(symbol)
        return sub

    def unsubscribe(self, consumer: str) -> None:
        sub = self._subs.pop(consumer, None)
        if sub is None:
            return
        for symbol in sub.symbols:
            self._subs_by_symbol[symbol].remove(sub)
            quoted = self._quote_subs_by_symbol.get(symbol, [])
            if sub in quoted:
                quoted.remove(sub)

    # --- bars built from quotes ---------------------------------------------------------

    def build_bars(self, symbol: Symbol, interval: timedelta) -> BarBuilder:
        """Aggregate this symbol's quotes (mid) into bars of ``interval``; closed ones are
        published like venue bars. Idempotent for the same ``(symbol, interval)``."""
        for builder in self._builders.get(symbol, []):
            if builder.interval == interval:
                return builder
        builder = BarBuilder(symbol, interval)
        self._builders.setdefault(symbol, []).append(builder)
        return builder

    def close_due_bars(self, now: datetime) -> list[Bar]:
        """Close the bars whose interval ended before ``now`` although no quote came after it
        (a quiet market must still close its bars). Returns the bars published."""
        closed: list[Bar] = []
        for builders in self._builders.values():
            for builder in builders:
                bar = builder.close_if_due(now)
                if bar is not None:
                    closed.append(bar)
                    self._publish_bar(bar)
        return closed

    # --- producers -----------------------------------------------------------------------

    def publish(self, event: MarketEvent) -> None:
        if isinstance(event, Quote):
            self._publish_quote(event)
        elif isinstance(event, Bar):
            self._publish_bar(event)
        else:
            self._trades[event.symbol] = event
            self._touch(event.symbol, event.received_at)
            self.volumes.on_trade(event)

    def _touch(self, symbol: Symbol, received_at: datetime) -> None:
        last = self._received.get(symbol)
        if last is None or received_at > last:
            self._received[symbol] = received_at

    def _publish_quote(self, quote: Quote) -> None:
        symbol = quote.symbol
        seq = quote.sequence
        if seq is not None:
            last = self._sequence.get(symbol)
            if last is not None:
                if seq <= last:
                    # Older than what we show: keeping it would move the view back in time.
                    self._out_of_order[symbol] = self._out_of_order.get(symbol, 0) + 1
                    return
                if seq > last + 1 and self._detect_gaps:
                    self._gaps[symbol] = self._gaps.get(symbol, 0) + 1
                    log.warning(
                        "marketdata.sequence_gap",
                        symbol=symbol,
                        expected=last + 1,
                        received=seq,
                        missed=seq - last - 1,
                    )
                    if self._on_gap is not None:
                        self._on_gap(symbol, last + 1, seq)
            self._sequence[symbol] = seq
        self._quotes[symbol] = quote
        self._touch(symbol, quote.received_at)
        for sub in self._quote_subs_by_symbol.get(symbol, ()):
            sub._quote_changed(symbol)
        builders = self._builders.get(symbol)
        if builders:
            for builder in builders:
                bar = builder.on_quote(quote)
                if bar is not None:
                    self._publish_bar(bar)

    def _publish_bar(self, bar: Bar) -> None:
        self._bars[(bar.symbol, bar.interval)] = bar
        self._touch(bar.symbol, bar.received_at)
        if bar.closed:
            self.volumes.on_bar(bar)
            for sub in self._subs_by_symbol.get(bar.symbol, ()):
                sub._bar_closed(bar)

    def reset_sequence(self, symbol: Symbol) -> None:
        """Forget the last sequence number, e.g. after a resubscribe restarts the venue's count."""
        self._sequence.pop(symbol, None)

    # --- the view ------------------------------------------------------------------------

    def quote(self, symbol: Symbol) -> Quote | None:
        return self._quotes.get(symbol)

    def quotes(self, symbols: Iterable[Symbol]) -> Mapping[Symbol, Quote]:
        return {s: q for s in symbols if (q := self._quotes.get(s)) is not None}

    def bar(self, symbol: Symbol, interval: str) -> Bar | None:
        """The newest bar of ``interval`` for ``symbol``, closed or still forming."""
        return self._bars.get((symbol, interval))

    def trade(self, symbol: Symbol) -> Trade | None:
        return self._trades.get(symbol)

    def last_received(self, symbol: Symbol) -> datetime | None:
        return self._received.get(symbol)

    def age(self, symbol: Symbol, now: datetime) -> timedelta | None:
        """How long ago (by our receipt time) anything arrived for ``symbol``; ``None`` if never."""
        last = self._received.get(symbol)
        return None if last is None else now - last

    def is_stale(self, symbol: Symbol, now: datetime, max_age: timedelta) -> bool:
        """True when nothing arrived for ``max_age``, or nothing ever did."""
        age = self.age(symbol, now)
        return age is None or age > max_age

    def gaps(self, symbol: Symbol) -> int:
        """Number of sequence gaps seen on ``symbol``."""
        return self._gaps.get(symbol, 0)

    def out_of_order(self, symbol: Symbol) -> int:
        """Quotes discarded because their sequence was not newer than the one shown."""
        return self._out_of_order.get(symbol, 0)

    def subscription(self, consumer: str) -> Subscription | None:
        return self._subs.get(consumer)
