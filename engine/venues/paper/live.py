"""The paper venue on a market it does not make: quotes, trades and bars from a feed (Binance's
public streams, a recording, the random walk) applied to the matching core, orders filled by the
:class:`~engine.venues.paper.fill_model.FillModel`.

The engine subscribes to the venue's market stream as to any venue's: quotes conflated per
symbol, trades and bars in order (bounded: a reader that far behind loses the oldest, counted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import structlog

from engine.domain.market import Bar, MarketEvent, Quote, Trade
from engine.domain.types import Asset, Symbol, utc_now
from engine.venues.base import InstrumentRules, OrderReport, OrderRequest
from engine.venues.metrics import MARKET, VenueMetrics
from engine.venues.paper.defaults import DEFAULT_BALANCES, DEFAULT_RULES, PRES_YES
from engine.venues.paper.fill_model import FillModel
from engine.venues.paper.streams import PaperStream, QuoteStream
from engine.venues.paper.venue import PaperVenue

log = structlog.get_logger(__name__)

#: trades and bars a slow market-stream reader may fall behind by before the oldest are dropped
MAX_BACKLOG = 10_000


class FeedStream(QuoteStream):
    """Quotes conflated per symbol, trades and bars queued in order (bounded)."""

    def __init__(
        self, symbols: frozenset[Symbol], on_close: Callable[[PaperStream[MarketEvent]], None]
    ) -> None:
        super().__init__(symbols, on_close)
        self._others: deque[Trade | Bar] = deque()
        self.dropped = 0

    def _publish(self, item: MarketEvent) -> None:
        if isinstance(item, Quote):
            super()._publish(item)
            return
        if self._done or item.symbol not in self.symbols:
            return
        if len(self._others) >= MAX_BACKLOG:
            self._others.popleft()
            self.dropped += 1
        self._others.append(item)
        self._wake.set()

    def drain(self) -> list[MarketEvent]:
        out: list[MarketEvent] = list(self._others)
        self._others.clear()
        return out + super().drain()

    async def __anext__(self) -> MarketEvent:
        while not self._done:
            if self._others:
                return self._others.popleft()
            if self._pending:
                symbol = next(iter(self._pending))
                return self._pending.pop(symbol)
            if self._ended:
                await self.aclose()
                break
            self._wake.clear()
            await self._wake.wait()
        raise StopAsyncIteration


class LivePaperVenue(PaperVenue):
    """A :class:`PaperVenue` fed market data from outside, with a seeded fill model."""

    def __init__(self, *, fill_model: FillModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fill_model = fill_model
        self.skipped = 0

    async def submit(self, order: OrderRequest) -> OrderReport:
        """After the order's latency, against the market as it is then."""
        delay = self.fill_model.next_latency().total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        return await self.place_now(order)

    async def place_now(self, order: OrderRequest) -> OrderReport:
        """The order at the market now, slipped (a replay that keeps its own time calls this
        after the latency it drew)."""
        with self._slipped(order.symbol):
            return await super().submit(order)

    def rules_of(self, symbol: Symbol) -> InstrumentRules:
        return self._rules_for(symbol)

    def market_stream(self, symbols: Sequence[Symbol]) -> PaperStream[MarketEvent]:
        for s in symbols:
            self._rules_for(s)
        stream = FeedStream(frozenset(symbols), self._unsubscribe_market)
        if self._closed:
            stream._end()
        else:
            self._market_streams.append(stream)
            self.metrics.stream_up(MARKET)
        return stream

    def apply(self, event: MarketEvent) -> None:
        """One event of the feed: the core sees it first, then the engine's stream."""
        if event.symbol not in self._rules:
            return
        if isinstance(event, Quote):
            try:
                self.set_quote(event)
            except ValueError as exc:
                # a crossed or negative quote: skipped and counted, the feed goes on
                self.skipped += 1
                log.warning("paper.quote_skipped", symbol=event.symbol, error=str(exc))
            return
        if isinstance(event, Trade):
            self.fill_model.on_trade(self._core, event, self._now)
        for stream in self._market_streams:
            stream._publish(event)

    @contextlib.contextmanager
    def _slipped(self, symbol: Symbol) -> Iterator[None]:
        touch = self._core.touch.get(symbol)
        spec = self._core.instruments.get(symbol)
        if touch is None or spec is None or self.fill_model.slippage_bps <= 0:
            yield
            return
        slipped = self.fill_model.slipped(touch, spec.tick_size)
        self._core.touch[symbol] = slipped
        try:
            yield
        finally:
            # A quote that arrived meanwhile replaced it: that one stays.
            current = self._core.touch.get(symbol)
            if current is slipped:
                touch.bid_left, touch.ask_left = slipped.bid_left, slipped.ask_left
                self._core.touch[symbol] = touch


def rules_for(symbol: Symbol) -> InstrumentRules:
    """The paper venue's rules for ``symbol``: its catalogue's, else generic ones
    (``XYZUSDT`` trades XYZ for USDT, anything else itself for USD)."""
    known = DEFAULT_RULES.get(symbol)
    if known is not None:
        return known
    base, quote = (symbol[:-4], symbol[-4:]) if symbol.endswith("USDT") else (symbol, "USD")
    return InstrumentRules(
        symbol=symbol,
        base_asset=Asset(base or symbol),
        quote_asset=Asset(quote),
        tick_size=Decimal("0.00000001"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal(1_000_000),
    )


def live_paper_venue(
    symbols: Sequence[Symbol],
    *,
    fill_model: FillModel,
    seed: int = 0,
    clock: Callable[[], datetime] = utc_now,
    metrics: VenueMetrics | None = None,
    balances: Mapping[Asset, Decimal] | None = None,
) -> LivePaperVenue:
    """A funded paper venue for ``symbols`` with the fill model, waiting for a feed."""
    rules = {s: rules_for(s) for s in symbols}
    assets = {a for r in rules.values() for a in (r.base_asset, r.quote_asset)}
    funds = dict(balances) if balances is not None else {}
    if balances is None:
        for asset in assets:
            funds[asset] = DEFAULT_BALANCES.get(asset, Decimal(0))
        for r in rules.values():
            if funds[r.quote_asset] == 0:
                funds[r.quote_asset] = Decimal(100_000)
    return LivePaperVenue(
        fill_model=fill_model,
        rules=rules,
        balances=funds,
        seed=seed,
        clock=clock,
        fees_in_quote=[s for s in symbols if s == PRES_YES],
        metrics=metrics,
    )
