"""A seeded random-walk quote source: deterministic for a seed, no I/O, no clock of its own."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from engine.domain.market import Quote, Trade
from engine.domain.types import Side, Symbol, TradeId


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkParams:
    start: Decimal
    tick: Decimal
    #: standard deviation of one step, in basis points of the price
    step_bps: Decimal = Decimal(5)
    spread_ticks: int = 1
    size: Decimal = Decimal(1)
    #: the walk is kept inside [floor, cap] (prediction markets live in (0, 1))
    floor: Decimal | None = None
    cap: Decimal | None = None


class RandomWalk:
    """Mid price follows a Gaussian random walk on the tick grid; the spread is fixed in ticks."""

    def __init__(self, symbol: Symbol, params: WalkParams, *, seed: int) -> None:
        if params.tick <= 0 or params.start <= 0:
            raise ValueError("random walk needs a positive start price and tick")
        self.symbol = symbol
        self.params = params
        self._rng = random.Random(f"{seed}:{symbol}")
        self._mid = self._on_grid(params.start)
        self._sequence = 0
        # trades draw from their own stream: the walk's quotes stay what they were for a seed
        self._trade_rng = random.Random(f"{seed}:{symbol}:trades")

    def _on_grid(self, price: Decimal) -> Decimal:
        p = self.params
        half_spread = p.tick * p.spread_ticks
        lo = max(p.floor if p.floor is not None else Decimal(0), half_spread + p.tick)
        price = max(price, lo)
        if p.cap is not None:
            price = min(price, p.cap - half_spread - p.tick)
        return (price / p.tick).to_integral_value(rounding=ROUND_HALF_EVEN) * p.tick

    @property
    def mid(self) -> Decimal:
        return self._mid

    def step(self) -> Decimal:
        """Advance one step and return the new mid."""
        # random.gauss gives a float; it only decides the *size* of the step and is turned into
        # a whole number of ticks at once, so no float ever reaches a price.
        z = self._rng.gauss(0.0, 1.0)
        move = self._mid * self.params.step_bps / Decimal(10_000) * Decimal(repr(round(z, 6)))
        self._mid = self._on_grid(self._mid + move)
        self._sequence += 1
        return self._mid

    def next_quote(self, now: datetime) -> Quote:
        mid = self.step()
        half = self.params.tick * self.params.spread_ticks
        return Quote(
            symbol=self.symbol,
            bid=mid - half,
            bid_size=self.params.size,
            ask=mid + half,
            ask_size=self.params.size,
            venue_ts=now,
            received_at=now,
            sequence=self._sequence,
        )

    def trade_at(self, quote: Quote) -> Trade:
        """A trade of the market's other participants at ``quote``'s touch (a buyer lifts the
        ask, a seller hits the bid), a tenth to all of the touch size: the volume a liquidity
        check measures orders against."""
        buy = self._trade_rng.random() < 0.5
        size = self.params.size * Decimal(self._trade_rng.randint(1, 10)) / 10
        return Trade(
            symbol=self.symbol,
            trade_id=TradeId(f"walk-{self._sequence}"),
            price=quote.ask if buy else quote.bid,
            quantity=size,
            aggressor=Side.BUY if buy else Side.SELL,
            venue_ts=quote.received_at,
            received_at=quote.received_at,
        )
