"""Simulator configuration: symbols, balances, credentials, fees, market pacing and faults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.exceptions import ConfigError
from engine.venues.simulator.faults import FaultPlan
from engine.venues.simulator.files import load_mapping

#: test credentials only: the simulator is never reachable from outside loopback
DEFAULT_API_KEY = "sim-api-key"
DEFAULT_API_SECRET = "sim-api-secret"


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolSpec:
    """One tradable symbol and the market that drives it."""

    symbol: str
    base_asset: str
    quote_asset: str
    start_price: Decimal
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal = Decimal(0)
    max_notional: Decimal | None = None
    #: defaults to ``step_size`` when left at zero
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(9_000_000)
    #: defaults to ``tick_size`` when left at zero
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(1_000_000)
    #: quantity available at the best bid and at the best ask after each market step
    touch_size: Decimal = Decimal(1)
    step_bps: Decimal = Decimal(5)
    spread_ticks: int = 1
    #: replay this CSV (OHLCV ``Date,Open,High,Low,Close,Volume`` or quotes) instead of the walk
    replay_csv: Path | None = None

    @property
    def effective_min_qty(self) -> Decimal:
        return self.min_qty if self.min_qty > 0 else self.step_size

    @property
    def effective_min_price(self) -> Decimal:
        return self.min_price if self.min_price > 0 else self.tick_size


def _btc() -> SymbolSpec:
    return SymbolSpec(
        symbol="BTCUSDT",
        base_asset="BTC",
        quote_asset="USDT",
        start_price=Decimal("30000.00"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"),
        min_notional=Decimal("5"),
        touch_size=Decimal("0.5"),
    )


def _eth() -> SymbolSpec:
    return SymbolSpec(
        symbol="ETHUSDT",
        base_asset="ETH",
        quote_asset="USDT",
        start_price=Decimal("2000.00"),
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.0001"),
        min_notional=Decimal("5"),
        touch_size=Decimal("5"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """Everything a simulator run needs. Money is Decimal; fee rates are fractions (0.001 = 10 bps).

    Commission is always charged in the symbol's *quote* asset, on both sides (Binance charges
    the received asset unless BNB is used; quote-only keeps base positions equal to the sum of
    fill quantities, which is what the ledger's reconciliation compares).
    """

    seed: int = 0
    symbols: tuple[SymbolSpec, ...] = field(default_factory=lambda: (_btc(), _eth()))
    balances: Mapping[str, Decimal] = field(
        default_factory=lambda: {"USDT": Decimal(100_000), "BTC": Decimal(1), "ETH": Decimal(10)}
    )
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    #: seconds between market steps; ``None`` means the market only moves on ``step()``
    market_interval: float | None = 0.5
    faults: FaultPlan = field(default_factory=FaultPlan)
    #: request-weight and order-count limits, as Binance's defaults
    weight_limit_1m: int = 6000
    order_limit_10s: int = 100

    def symbol(self, name: str) -> SymbolSpec:
        for spec in self.symbols:
            if spec.symbol == name:
                return spec
        raise KeyError(name)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> SimulatorConfig:
        """Build a config from TOML/JSON data (decimals may be strings or numbers)."""
        known = {
            "seed",
            "symbols",
            "balances",
            "api_key",
            "api_secret",
            "maker_fee",
            "taker_fee",
            "market_interval",
            "faults",
            "weight_limit_1m",
            "order_limit_10s",
        }
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"simulator config: unknown keys {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key in ("seed", "weight_limit_1m", "order_limit_10s"):
            if key in data:
                kwargs[key] = int(data[key])
        for key in ("api_key", "api_secret"):
            if key in data:
                kwargs[key] = str(data[key])
        for key in ("maker_fee", "taker_fee"):
            if key in data:
                kwargs[key] = _dec(data[key], key)
        if "market_interval" in data:
            mi = data["market_interval"]
            kwargs["market_interval"] = None if mi in (None, 0, "none") else float(mi)
        if "balances" in data:
            kwargs["balances"] = {
                str(k): _dec(v, f"balances.{k}") for k, v in dict(data["balances"]).items()
            }
        if "symbols" in data:
            kwargs["symbols"] = tuple(
                _symbol_from_mapping(s, base_dir) for s in list(data["symbols"])
            )
        if "faults" in data:
            kwargs["faults"] = FaultPlan.from_mapping(data["faults"])
        return cls(**kwargs)

    @classmethod
    def load(cls, path: Path) -> SimulatorConfig:
        try:
            return cls.from_mapping(load_mapping(path), base_dir=path.parent)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # valid TOML of the wrong shape (``symbols = 5``) fails deep in from_mapping
            raise ConfigError(f"{path}: not a simulator config ({exc!r})") from None


def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, float):
        # a TOML/JSON float would carry binary noise: go through its shortest repr
        value = repr(value)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigError(f"simulator config: {what} must be a decimal, got {value!r}") from exc


def _symbol_from_mapping(data: Mapping[str, Any], base_dir: Path | None) -> SymbolSpec:
    required = ("symbol", "base_asset", "quote_asset", "start_price", "tick_size", "step_size")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"simulator config: symbol entry misses {missing}")
    replay = data.get("replay_csv")
    replay_path: Path | None = None
    if replay:
        replay_path = Path(str(replay))
        if not replay_path.is_absolute() and base_dir is not None:
            replay_path = base_dir / replay_path
    dec_keys = (
        "start_price",
        "tick_size",
        "step_size",
        "min_notional",
        "min_qty",
        "max_qty",
        "min_price",
        "max_price",
        "touch_size",
        "step_bps",
    )
    kwargs: dict[str, Any] = {k: _dec(data[k], k) for k in dec_keys if k in data}
    if data.get("max_notional") is not None:
        kwargs["max_notional"] = _dec(data["max_notional"], "max_notional")
    if "spread_ticks" in data:
        kwargs["spread_ticks"] = int(data["spread_ticks"])
    return SymbolSpec(
        symbol=str(data["symbol"]).upper(),
        base_asset=str(data["base_asset"]),
        quote_asset=str(data["quote_asset"]),
        replay_csv=replay_path,
        **kwargs,
    )
