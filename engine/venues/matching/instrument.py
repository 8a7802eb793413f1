"""What the core needs to know about one tradable instrument: its assets, its grids, its fee asset.

Nothing here is Binance-specific: a spot pair (BTC/USDT, 0.00001 BTC steps, 0.01 USDT ticks) and
a prediction-market contract (whole contracts, priced 0.01..0.99 dollars) are both an
:class:`InstrumentSpec` with different grids.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import Enum

_ZERO = Decimal(0)


class FeeAsset(Enum):
    """Which asset a fill's fee is charged in."""

    #: the quote asset on both sides (Binance's simulator, prediction markets)
    QUOTE = "QUOTE"
    #: the asset the fill pays out: base for a buy, quote for a sell (Binance spot without BNB)
    RECEIVED = "RECEIVED"


class Violation(Enum):
    """The grid an order is off (each venue words its own refusal)."""

    PRICE = "PRICE"
    QUANTITY = "QUANTITY"
    NOTIONAL = "NOTIONAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentSpec:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal = _ZERO
    max_price: Decimal | None = None
    min_notional: Decimal = _ZERO
    max_notional: Decimal | None = None
    fee_asset: FeeAsset = FeeAsset.QUOTE
    #: quantities the core derives from quote sizes are normalized (``Decimal.normalize``), as
    #: the paper venue's ``InstrumentRules.round_quantity`` always reported them; otherwise they
    #: keep the step's exponent, as the simulator's snapshots and ground truth show them
    canonical_quantities: bool = False

    def fee_in_quote(self, *, buying: bool) -> bool:
        return self.fee_asset is FeeAsset.QUOTE or not buying

    def floor_to_step(self, qty: Decimal) -> Decimal:
        """Round down to the quantity step (never more than the size that is there)."""
        if self.step_size <= 0:
            return qty
        steps = (qty / self.step_size).to_integral_value(rounding=ROUND_DOWN)
        if self.canonical_quantities:
            return (steps * self.step_size).normalize() if steps else _ZERO
        return steps * self.step_size

    def available(self, left: Decimal) -> Decimal:
        """What an order can take of ``left``, the touch size not yet used since the quote."""
        # Canonical quantities are re-rounded on every read so each fill is normalized; the
        # simulator's ``left`` is already on the step and keeps its exponent.
        return self.floor_to_step(left) if self.canonical_quantities else left

    def violation(
        self, quantity: Decimal, price: Decimal | None, *, ref_price: Decimal
    ) -> Violation | None:
        """The first grid this order is off, in the order Binance checks its filters.

        Grids are anchored at the minimum (``(price - min_price) % tick``), so a grid need not
        start at zero. ``price`` is ``None`` for a market order, whose notional is checked at
        ``ref_price`` (the touch it would take).
        """
        if price is not None:
            if price < self.min_price or (self.max_price is not None and price > self.max_price):
                return Violation.PRICE
            if self.tick_size > 0 and (price - self.min_price) % self.tick_size != 0:
                return Violation.PRICE
        if quantity < self.min_qty or quantity > self.max_qty:
            return Violation.QUANTITY
        if self.step_size > 0 and (quantity - self.min_qty) % self.step_size != 0:
            return Violation.QUANTITY
        notional = quantity * (price if price is not None else ref_price)
        if notional < self.min_notional:
            return Violation.NOTIONAL
        if self.max_notional is not None and notional > self.max_notional:
            return Violation.NOTIONAL
        return None
