"""Which strategies run, on which symbols, with which params and limits: a TOML file.

Validated in full at start (pydantic for the shape, each strategy's factory for its params), so a
typo stops the engine before it trades, with an error naming the file, the strategy and the field::

    [[strategy]]
    id = "sma-btc"              # unique; the strategy_id in the ledger
    kind = "sma_cross"          # a name in strategies.registry.REGISTRY
    symbols = ["BTCUSDT"]
    bar_interval = "5s"         # bar strategies: bars of this interval (built from quotes)
    decision_window = "1s"      # quote strategies: decisions in one window share their keys
    account = "main"            # optional: the account its orders go to (default: the engine's)
    [strategy.params]           # strategy-specific; numbers may be written bare or as strings
    fast = 3
    qty = "0.001"
    [strategy.limits]           # all optional
    max_position = "0.01"
    max_order_qty = "0.005"
    max_order_notional = "500"
    max_quote_age = "5s"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from engine.domain.types import StrategyId, Symbol
from engine.exceptions import ConfigError
from engine.marketdata.bars import interval_name, parse_interval
from engine.strategy_host import DEFAULT_DECISION_WINDOW, HostedStrategy
from strategies.base import DecisionMode, ParamError, StrategyLimits
from strategies.registry import REGISTRY, create_strategy


def _to_text(value: Any) -> str:
    """Params reach strategies as text; a TOML float's repr is the literal the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value) if isinstance(value, float) else str(value)
    raise ValueError(f"must be a string, number or boolean, got {type(value).__name__}")


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a decimal number, got {value!r}")
    try:
        result = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise ValueError(f"must be a decimal number, got {value!r}") from None
    if not result.is_finite() or result <= 0:
        raise ValueError(f"must be a positive decimal number, got {value!r}")
    return result


def _to_interval(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like '5s', '1m', '1h', '1d', got {value!r}")
    return parse_interval(value)


PositiveDecimal = Annotated[Decimal, BeforeValidator(_to_decimal)]
Interval = Annotated[timedelta, BeforeValidator(_to_interval)]
ParamText = Annotated[str, BeforeValidator(_to_text)]


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_position: PositiveDecimal | None = None
    max_order_qty: PositiveDecimal | None = None
    max_order_notional: PositiveDecimal | None = None
    max_quote_age: Interval = timedelta(seconds=5)


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: str
    symbols: list[str] = Field(min_length=1)
    account: str | None = None
    bar_interval: Interval | None = None
    decision_window: Interval = DEFAULT_DECISION_WINDOW
    params: dict[str, ParamText] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in REGISTRY:
            raise ValueError(f"unknown strategy kind {kind!r}; known kinds: {sorted(REGISTRY)}")
        return kind

    @field_validator("symbols")
    @classmethod
    def _distinct_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not symbol or symbol != symbol.strip():
                raise ValueError(f"symbol {symbol!r} is empty or has surrounding spaces")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols repeat: {symbols}")
        return symbols


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: list[_Strategy] = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategySpec:
    """One validated ``[[strategy]]`` entry."""

    strategy_id: StrategyId
    kind: str
    symbols: tuple[Symbol, ...]
    params: Mapping[str, str]
    limits: StrategyLimits
    decision_window: timedelta
    #: bar strategies: the interval to build/take bars of; ``None`` for quote strategies
    bar_interval: timedelta | None
    account: str | None = None
    source: Path = field(default=Path("<memory>"))

    @property
    def bar_interval_name(self) -> str | None:
        return None if self.bar_interval is None else interval_name(self.bar_interval)

    def hosted(self) -> HostedStrategy:
        """A fresh strategy instance with its config, ready for :class:`StrategyHost.add`."""
        strategy = create_strategy(self.kind, self.strategy_id, self.symbols, self.params)
        return HostedStrategy(
            strategy=strategy,
            params=self.params,
            limits=self.limits,
            decision_window=self.decision_window,
            bar_interval=self.bar_interval_name,
        )


def load_strategy_config(path: Path) -> tuple[StrategySpec, ...]:
    """Read and validate the whole file; raise :class:`ConfigError` at the first problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read strategy config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_strategy_config(raw, source=path)


def parse_strategy_config(raw: Mapping[str, Any], *, source: Path) -> tuple[StrategySpec, ...]:
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, source)) from None

    specs: list[StrategySpec] = []
    seen: set[str] = set()
    for entry in parsed.strategy:
        where = f"{source}: strategy {entry.id!r}"
        if entry.id in seen:
            raise ConfigError(f"{where}: field 'id': the id is used by another strategy")
        seen.add(entry.id)
        spec = StrategySpec(
            strategy_id=StrategyId(entry.id),
            kind=entry.kind,
            symbols=tuple(Symbol(s) for s in entry.symbols),
            params=MappingProxyType(dict(entry.params)),
            limits=StrategyLimits(
                max_position=entry.limits.max_position,
                max_order_qty=entry.limits.max_order_qty,
                max_order_notional=entry.limits.max_order_notional,
                max_quote_age=entry.limits.max_quote_age,
            ),
            decision_window=entry.decision_window,
            bar_interval=entry.bar_interval,
            account=entry.account,
            source=source,
        )
        try:
            hosted = spec.hosted()
        except ParamError as exc:
            name = "symbols" if exc.field == "symbols" else f"params.{exc.field}"
            raise ConfigError(f"{where}: field {name!r}: {exc.detail}") from None
        if hosted.strategy.mode is DecisionMode.BAR and spec.bar_interval is None:
            raise ConfigError(
                f"{where}: field 'bar_interval': required for {entry.kind!r}, which decides on "
                'closed bars (e.g. bar_interval = "1m")'
            )
        specs.append(spec)
    return tuple(specs)


def _describe(exc: ValidationError, raw: Mapping[str, Any], source: Path) -> str:
    """The first error, named as file / strategy / dotted field."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = f"{source}"
    if len(loc) >= 2 and loc[0] == "strategy" and isinstance(loc[1], int):
        entries = raw.get("strategy")
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        ident = entry.get("id") if isinstance(entry, dict) else None
        where += f": strategy {ident!r}" if isinstance(ident, str) else f": strategy #{loc[1] + 1}"
        loc = loc[2:]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    if loc:
        field_name = ".".join(str(part) for part in loc)
        return f"{where}: field {field_name!r}: {message}"
    return f"{where}: {message}"
