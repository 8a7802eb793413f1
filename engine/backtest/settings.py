"""How a backtest models the market and the account: the fill model (when orders fill, spread,
latency, participation, fees), capital, limits, and the trading rules of the replayed symbol.

Every setting has a CLI flag (``tradectl backtest --help``) and a key in the ``[backtest]``
table of a strategies TOML (:func:`settings_from_toml`). The ideal model, under which results
equal backtesting.py's ``trade_on_close=True``, is ``fill=close, fees=0, spread=0, latency=0,
participation=off``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from engine.backtest.data import BarSeries
from engine.backtest.errors import BacktestError
from engine.domain.types import Asset, Symbol
from engine.venues.base import InstrumentRules
from engine.venues.paper import DEFAULT_RULES, PRES_YES
from strategies.base import StrategyLimits

_DEFAULT_SYMBOL = Symbol("BTCUSDT")
#: symbols whose fees the paper venue charges in the quote asset (prediction markets)
_FEES_IN_QUOTE = frozenset({PRES_YES})
#: the largest order an instrument inferred from data accepts (no venue limit is known)
_INFERRED_MAX_QTY = Decimal(10) ** 12


class FillAt(enum.StrEnum):
    """When a decision's orders reach the market."""

    #: at the close of the bar the strategy decided on (plus the latency)
    CLOSE = "close"
    #: at the open of the next bar (plus the latency); the last bar's orders never fill
    OPEN = "open"


class FeeAsset(enum.StrEnum):
    """In which asset fees are charged."""

    #: in the asset received (Binance spot: base on a buy, quote on a sell)
    RECEIVED = "received"
    #: always in the quote asset (prediction markets, most brokers)
    QUOTE = "quote"


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestSettings:
    symbol: Symbol = _DEFAULT_SYMBOL
    #: quote-asset cash at the start; the base asset starts at zero
    capital: Decimal = Decimal(100_000)
    fill: FillAt = FillAt.CLOSE
    #: full quoted spread around the bar's price, in basis points (0: bid = ask = price)
    spread_bps: Decimal = Decimal(2)
    #: mean of the exponential latency between decision and arrival; 0: none
    latency_ms: Decimal = Decimal(50)
    #: share of the bar's volume shown at each quote (the rest of an order expires or rests);
    #: ``None`` (off, the default for bar data): the whole order fills
    participation: Decimal | None = None
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    #: trading rules; ``None``: the paper venue's for a symbol it knows, else inferred from data
    rules: InstrumentRules | None = None
    #: override the tick size / lot step of the rules (known or inferred)
    tick_size: Decimal | None = None
    lot_step: Decimal | None = None
    #: charge every fee in the quote asset (prediction markets), not in the asset received
    fees_in_quote: bool = False

    @classmethod
    def for_symbol(cls, symbol: Symbol) -> BacktestSettings:
        """Defaults for ``symbol``: fees in the asset received on crypto pairs (``…USDT`` and
        the pairs the paper venue knows), as Binance charges them; in the quote asset
        elsewhere (prediction markets, stocks, FX), where a fee taken in shares would leave
        an unsellable fraction behind."""
        crypto = symbol.endswith("USDT") or (
            symbol in DEFAULT_RULES and symbol not in _FEES_IN_QUOTE
        )
        return cls(symbol=symbol, fees_in_quote=not crypto)

    @property
    def fee_asset(self) -> FeeAsset:
        return FeeAsset.QUOTE if self.fees_in_quote else FeeAsset.RECEIVED

    def check(self) -> None:
        """Refuse settings no market has, naming the setting."""
        if self.capital <= 0:
            raise BacktestError(f"backtest setting capital must be > 0, got {self.capital}")
        if self.participation is not None and not 0 < self.participation <= 1:
            raise BacktestError(
                f"backtest setting participation must be in (0, 1] or off, got {self.participation}"
            )
        for name in ("spread_bps", "latency_ms", "maker_fee", "taker_fee"):
            value = getattr(self, name)
            if value < 0:
                raise BacktestError(f"backtest setting {name} must be >= 0, got {value}")
        for name in ("tick_size", "lot_step"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise BacktestError(f"backtest setting {name} must be > 0, got {value}")

    def rules_for(self, series: BarSeries | None) -> InstrumentRules:
        """The replayed symbol's trading rules: given, known to the paper venue, or inferred
        from the data's precision (never a fixed 0.01: EURUSD is quoted to 0.00001)."""
        rules = self.rules or DEFAULT_RULES.get(self.symbol)
        if rules is None:
            rules = inferred_rules(self.symbol, series)
        if self.tick_size is not None:
            rules = dataclasses.replace(rules, tick_size=self.tick_size)
        if self.lot_step is not None:
            rules = dataclasses.replace(
                rules, step_size=self.lot_step, min_qty=max(self.lot_step, Decimal(0))
            )
        return rules


def _assets(symbol: Symbol) -> tuple[Asset, Asset]:
    base, quote = (symbol[:-4], symbol[-4:]) if symbol.endswith("USDT") else (symbol, "USD")
    return Asset(base or symbol), Asset(quote)


def inferred_rules(symbol: Symbol, series: BarSeries | None) -> InstrumentRules:
    """Rules for a symbol the paper venue does not know: ``XYZUSDT`` trades XYZ for USDT,
    anything else trades itself for USD; the tick is the finest price step the data shows and
    the lot step the finest volume step (whole units for whole-number volumes)."""
    base, quote = _assets(symbol)
    tick = series.tick_size if series is not None else Decimal("0.00000001")
    step = series.lot_step if series is not None else Decimal("0.00000001")
    return InstrumentRules(
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=tick,
        step_size=step,
        min_qty=step,
        max_qty=_INFERRED_MAX_QTY,
    )


def generic_rules(symbol: Symbol) -> InstrumentRules:
    """:func:`inferred_rules` without data: the finest steps a venue uses (1e-8)."""
    return inferred_rules(symbol, None)


#: the keys of a ``[backtest]`` table and what each sets
_TOML_KEYS = {
    "capital": "capital",
    "fill": "fill",
    "fees": "fees",
    "fee_asset": "fee_asset",
    "spread_bps": "spread_bps",
    "latency_ms": "latency_ms",
    "participation": "participation",
    "tick_size": "tick_size",
    "lot_step": "lot_step",
}


def parse_overrides(values: Mapping[str, object], where: str) -> dict[str, object]:
    """The fill-model keys (CLI flags or a ``[backtest]`` table) as :class:`BacktestSettings`
    fields; a bad value is a one-line error naming the key."""
    out: dict[str, object] = {}
    for key, raw in values.items():
        if raw is None:
            continue
        if key not in _TOML_KEYS:
            known = ", ".join(sorted(_TOML_KEYS))
            raise BacktestError(f"{where}: unknown backtest setting {key!r} (known: {known})")
        text = str(raw).strip()
        try:
            if key == "fill":
                out["fill"] = FillAt(text.lower())
            elif key == "fee_asset":
                out["fees_in_quote"] = FeeAsset(text.lower()) is FeeAsset.QUOTE
            elif key == "participation" and text.lower() in ("off", "none", "0", ""):
                out["participation"] = None
            elif key == "fees":
                rate = _decimal(text)
                out["maker_fee"] = out["taker_fee"] = rate
            else:
                out[key] = _decimal(text)
        except (ValueError, InvalidOperation):
            raise BacktestError(f"{where}: backtest setting {key}: bad value {raw!r}") from None
    return out


def _decimal(text: str) -> Decimal:
    value = Decimal(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not value.is_finite():
        raise ValueError(text)
    return value
