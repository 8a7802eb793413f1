"""Fee models: how much a fill costs, and how much a buy must hold back to be sure it can pay."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

from engine.domain.types import Liquidity

_FEE_PLACES = Decimal("0.00000001")


class FeeModel(Protocol):
    def fee(
        self, *, quantity: Decimal, price: Decimal, liquidity: Liquidity, in_quote: bool
    ) -> Decimal:
        """The fee of one fill, in the quote asset when ``in_quote`` else in the base asset."""
        ...

    def buy_reserve_per_unit(self, price: Decimal) -> Decimal:
        """The most one unit bought at ``price`` can cost in the quote asset, its fee included
        (what a buy paying fees in quote locks per unit, so a fill can never overdraw)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RateFees:
    """A maker and a taker rate on the fill, rounded half-even to 8 places (Binance)."""

    maker: Decimal
    taker: Decimal

    @property
    def reserve_rate(self) -> Decimal:
        return max(self.maker, self.taker)

    def fee(
        self, *, quantity: Decimal, price: Decimal, liquidity: Liquidity, in_quote: bool
    ) -> Decimal:
        rate = self.maker if liquidity is Liquidity.MAKER else self.taker
        amount = price * quantity if in_quote else quantity
        return (amount * rate).quantize(_FEE_PLACES, rounding=ROUND_HALF_EVEN)

    def buy_reserve_per_unit(self, price: Decimal) -> Decimal:
        return price * (1 + self.reserve_rate)
