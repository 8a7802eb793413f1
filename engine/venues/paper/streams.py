"""The paper venue's subscriptions: in-process async iterators fed as the venue publishes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

from engine.domain.market import MarketEvent, Quote, Trade
from engine.domain.types import Liquidity, Symbol, TradeId
from engine.venues.matching import Fill

T = TypeVar("T")


class _EndOfStream:
    """Queued after the last event when the venue closes, so consumers drain and then stop."""


_END = _EndOfStream()


class PaperStream(Generic[T]):
    """One subscriber's stream: an async iterator that ends when the venue closes.

    Subscribing happens when the stream is *created* (not on first iteration), so no event
    published between ``user_stream()`` and the first ``anext`` is lost.
    """

    def __init__(self, on_close: Callable[[PaperStream[T]], None]) -> None:
        self._queue: asyncio.Queue[T | _EndOfStream] = asyncio.Queue()
        self._on_close = on_close
        self._done = False

    def _publish(self, item: T) -> None:
        if not self._done:
            self._queue.put_nowait(item)

    def drain(self) -> list[T]:
        """The events already published and not yet read, without waiting (the paper venue
        publishes inline, so after an awaited call its events are all here)."""
        out: list[T] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _EndOfStream):
                # Keep the end marker for the next reader so the stream still ends.
                self._queue.put_nowait(item)
                break
            out.append(item)
        return out

    def _end(self) -> None:
        self._queue.put_nowait(_END)

    def __aiter__(self) -> PaperStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if self._done or isinstance(item, _EndOfStream):
            await self.aclose()
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Unsubscribe; further iteration ends at once, including a reader already waiting."""
        if not self._done:
            self._done = True
            self._on_close(self)
            self._wake_reader()

    def _wake_reader(self) -> None:
        self._queue.put_nowait(_END)


#: public trades a reader may fall behind by; older ones are dropped (and counted)
MAX_TRADE_BACKLOG = 10_000


class QuoteStream(PaperStream[MarketEvent]):
    """Market data is conflated per symbol: a slow reader gets the latest quote, not a backlog.
    Public trades are not conflated (each is volume the liquidity check counts): they queue, up
    to :data:`MAX_TRADE_BACKLOG`, and are served after the pending quotes."""

    def __init__(
        self, symbols: frozenset[Symbol], on_close: Callable[[PaperStream[MarketEvent]], None]
    ) -> None:
        super().__init__(on_close)
        self.symbols = symbols
        self._pending: dict[Symbol, Quote] = {}
        self._trades: deque[Trade] = deque()
        #: trades dropped because the reader fell too far behind
        self.dropped_trades = 0
        self._wake = asyncio.Event()
        self._ended = False

    def _publish(self, item: MarketEvent) -> None:
        if self._done or item.symbol not in self.symbols:
            return
        if isinstance(item, Trade):
            if len(self._trades) >= MAX_TRADE_BACKLOG:
                self._trades.popleft()
                self.dropped_trades += 1
            self._trades.append(item)
            self._wake.set()
            return
        if not isinstance(item, Quote):
            return
        # Re-inserting moves the symbol to the back: symbols are served in order of update.
        self._pending.pop(item.symbol, None)
        self._pending[item.symbol] = item
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()

    def _wake_reader(self) -> None:
        self._wake.set()

    def drain(self) -> list[MarketEvent]:
        out: list[MarketEvent] = [*self._pending.values(), *self._trades]
        self._pending.clear()
        self._trades.clear()
        return out

    async def __anext__(self) -> MarketEvent:
        while not self._done:
            if self._pending:
                symbol = next(iter(self._pending))
                return self._pending.pop(symbol)
            if self._trades:
                return self._trades.popleft()
            if self._ended:
                await self.aclose()
                break
            self._wake.clear()
            await self._wake.wait()
        raise StopAsyncIteration


def public_trade(fill: Fill[datetime]) -> Trade:
    """Our fill as the market's public trade (the venue's tape shows it too); the aggressor is
    us when we took liquidity, else whoever hit our resting order."""
    taker = fill.side if fill.liquidity is Liquidity.TAKER else fill.side.opposite
    return Trade(
        symbol=Symbol(fill.symbol),
        trade_id=TradeId(f"fill-{fill.trade_id}"),
        price=fill.price,
        quantity=fill.quantity,
        aggressor=taker,
        venue_ts=fill.at,
        received_at=fill.at,
    )
