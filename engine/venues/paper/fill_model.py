"""How the paper venue fills orders on real market data: latency, slippage, participation.

- **Latency**: every order reaches the matching core after a delay drawn from an exponential
  distribution of mean ``latency_ms``, from a generator seeded by the run's seed, so the n-th
  order of a run is delayed the same in a paper run and in its replay. It meets the market as it
  is after the delay.
- **Slippage**: an order that takes liquidity pays ``slippage_bps`` worse than the touch
  (rounded to the tick, away from us): the touch it meets is moved by that much.
- **Limit orders** rest until the market crosses them: a quote whose ask (bid) reaches a resting
  buy (sell) fills it at its own price, up to the quote's size (the matching core); and a public
  trade at or through its price fills it by **participation**: at most ``participation`` of the
  trade's quantity, shared best price first then oldest first, only by trades whose aggressor
  was on the other side (both sides when the venue does not say).

The model is pure: the venue shell applies it to the core (engine/venues/paper/live.py) and the
replay of ``tradectl compare`` applies the same one to the same core.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.domain.market import Trade
from engine.domain.types import Side
from engine.venues.matching import MatchingCore, Touch

_BPS = Decimal(10_000)


@dataclass(slots=True)
class FillModel:
    latency_ms: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    participation: Decimal = Decimal("0.1")
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.slippage_bps < 0:
            raise ValueError("paper latency_ms and slippage_bps must be >= 0")
        if not 0 < self.participation <= 1:
            raise ValueError(f"paper participation must be in (0, 1], got {self.participation}")
        self._rng = random.Random(f"paper-fills:{self.seed}")

    def next_latency(self) -> timedelta:
        """The delay of the next order (one draw per order, in order)."""
        mean = float(self.latency_ms)
        return timedelta(milliseconds=self._rng.expovariate(1.0 / mean) if mean > 0 else 0.0)

    def slipped(self, touch: Touch, tick: Decimal) -> Touch:
        """The touch a taking order meets: ask up and bid down by the slippage, on the tick."""
        if self.slippage_bps <= 0:
            return touch
        shift = self.slippage_bps / _BPS
        return Touch(
            bid=_to_tick(touch.bid * (1 - shift), tick, ROUND_FLOOR),
            bid_size=touch.bid_size,
            ask=_to_tick(touch.ask * (1 + shift), tick, ROUND_CEILING),
            ask_size=touch.ask_size,
            bid_left=touch.bid_left,
            ask_left=touch.ask_left,
        )

    def on_trade(
        self, core: MatchingCore[datetime], trade: Trade, clock: Callable[[], datetime]
    ) -> None:
        """Fill the resting orders ``trade`` reaches, by participation in its quantity."""
        spec = core.instruments.get(trade.symbol)
        if spec is None:
            return
        budget = spec.floor_to_step(trade.quantity * self.participation)
        if budget <= 0:
            return
        for side in _sides_hit(trade.aggressor):
            reached = [
                o
                for o in core.open_orders(trade.symbol)
                if o.side is side
                and o.price is not None
                and (o.price >= trade.price if side is Side.BUY else o.price <= trade.price)
            ]
            sign = -1 if side is Side.BUY else 1
            reached.sort(key=lambda o: (sign * (o.price or 0), o.seq))
            left = budget
            for order in reached:
                qty = spec.floor_to_step(min(order.remaining, left))
                if qty <= 0:
                    break
                core.fill_resting(order.order_id, qty, clock=clock)
                left -= qty


def _sides_hit(aggressor: Side | None) -> tuple[Side, ...]:
    """A seller taking hits resting buys, and the other way round."""
    if aggressor is Side.SELL:
        return (Side.BUY,)
    if aggressor is Side.BUY:
        return (Side.SELL,)
    return (Side.BUY, Side.SELL)


def _to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    if tick <= 0:
        return price
    return (price / tick).to_integral_value(rounding=rounding) * tick
