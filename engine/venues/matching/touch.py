"""The market at one instrument: the best bid and ask, and the size our orders may still take."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.domain.types import Side


@dataclass(slots=True, kw_only=True)
class Touch:
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    #: what is left at the touch after our orders took from it since the quote arrived
    bid_left: Decimal
    ask_left: Decimal

    def price_for(self, side: Side) -> Decimal:
        """The price an order on ``side`` takes liquidity at: the ask for a buy."""
        return self.ask if side is Side.BUY else self.bid

    def left_for(self, side: Side) -> Decimal:
        return self.ask_left if side is Side.BUY else self.bid_left

    def consume(self, side: Side, qty: Decimal) -> None:
        if side is Side.BUY:
            self.ask_left -= qty
        else:
            self.bid_left -= qty

    def crosses(self, side: Side, limit: Decimal | None) -> bool:
        """Whether an order on ``side`` at ``limit`` (``None``: market) can take the touch."""
        if limit is None:
            return True
        return self.ask <= limit if side is Side.BUY else self.bid >= limit
