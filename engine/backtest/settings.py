"""How a backtest models the market and the account: capital, spread, latency, participation,
fees, limits, and the trading rules of the replayed symbol."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from engine.domain.types import Asset, Symbol
from engine.venues.base import InstrumentRules
from engine.venues.paper import PRES_YES
from strategies.base import StrategyLimits

_DEFAULT_SYMBOL = Symbol("BTCUSDT")
#: symbols whose fees the paper venue charges in the quote asset (prediction markets)
_FEES_IN_QUOTE = frozenset({PRES_YES})


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestSettings:
    symbol: Symbol = _DEFAULT_SYMBOL
    #: quote-asset cash at the start; the base asset starts at zero
    capital: Decimal = Decimal(100_000)
    spread_bps: Decimal = Decimal(2)
    latency_ms: Decimal = Decimal(50)
    participation: Decimal = Decimal("0.0001")
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    #: trading rules; ``None`` uses the paper venue's defaults for the symbol, else generic ones
    rules: InstrumentRules | None = None
    #: charge every fee in the quote asset (prediction markets), not in the asset received
    fees_in_quote: bool = False

    @classmethod
    def for_symbol(cls, symbol: Symbol) -> BacktestSettings:
        """Defaults for ``symbol``: fees in the quote asset on prediction markets, as the
        paper venue charges them there."""
        return cls(symbol=symbol, fees_in_quote=symbol in _FEES_IN_QUOTE)


def generic_rules(symbol: Symbol) -> InstrumentRules:
    """Rules for a symbol the paper venue does not know: ``XYZUSDT`` trades XYZ for USDT,
    anything else trades itself for USD."""
    base, quote = (symbol[:-4], symbol[-4:]) if symbol.endswith("USDT") else (symbol, "USD")
    return InstrumentRules(
        symbol=symbol,
        base_asset=Asset(base or symbol),
        quote_asset=Asset(quote),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal(1_000_000),
    )
