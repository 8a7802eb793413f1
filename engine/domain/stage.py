"""Stages of the path from a backtest to live trading, and the capital fraction of each.

A strategy is written for its full size. The stage scales what reaches the venue: every order's
quantity is multiplied by the stage's capital fraction, and what the strategy sees of its own
position and open orders is divided by it, so the strategy keeps deciding as at full size (its
"sell what I hold" sells the scaled position, not a fraction of it again). The fraction and the
stage are recorded with each decision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from engine.domain.intents import Buy, Intent, Sell


class Stage(StrEnum):
    BACKTEST = "backtest"  #: replayed history (tradectl backtest)
    PAPER = "paper"  #: live or recorded market data, simulated fills
    SMALL_LIVE = "small_live"  #: real money, a small fraction of the full size
    LIVE = "live"  #: real money, full size


#: the capital fraction of each stage unless TRADECTL_CAPITAL_FRACTION says otherwise
DEFAULT_FRACTIONS: dict[Stage, Decimal] = {
    Stage.BACKTEST: Decimal(1),
    Stage.PAPER: Decimal(1),
    Stage.SMALL_LIVE: Decimal("0.1"),
    Stage.LIVE: Decimal(1),
}

#: scaled quantities are kept to this many decimal places: dividing a position by the fraction
#: and multiplying the order back must give the position again, not 0.0999…9 (dust at the step)
_QUANTUM = Decimal("1e-18")


@dataclass(frozen=True, slots=True)
class Staging:
    stage: Stage
    capital_fraction: Decimal

    def __post_init__(self) -> None:
        f = self.capital_fraction
        if not isinstance(f, Decimal) or not f.is_finite() or not 0 < f <= 1:
            raise ValueError(f"capital fraction must be a Decimal in (0, 1], got {f!r}")

    @classmethod
    def of(cls, stage: Stage, fraction: Decimal | None = None) -> Staging:
        return cls(stage, DEFAULT_FRACTIONS[stage] if fraction is None else fraction)

    def to_venue(self, quantity: Decimal) -> Decimal:
        """The strategy's full-size quantity as the size sent."""
        return _tidy(quantity * self.capital_fraction)

    def to_strategy(self, quantity: Decimal) -> Decimal:
        """A real quantity (position, open order) as the strategy's full-size view of it."""
        return _tidy(quantity / self.capital_fraction)

    def apply(self, intent: Intent) -> Intent:
        """``intent`` stamped with the stage and fraction, an order's quantity scaled."""
        if isinstance(intent, Buy | Sell):
            return dataclasses.replace(
                intent,
                quantity=self.to_venue(intent.quantity),
                stage=self.stage.value,
                capital_fraction=self.capital_fraction,
            )
        return dataclasses.replace(
            intent, stage=self.stage.value, capital_fraction=self.capital_fraction
        )


def _tidy(quantity: Decimal) -> Decimal:
    return quantity.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
