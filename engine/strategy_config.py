"""Which strategies run, on which symbols, with which params and limits: a TOML file.

Validated in full at start (pydantic for the shape, each strategy's factory for its params), so a
typo stops the engine before it trades, with an error naming the file, the strategy and the field::

    [[strategy]]
    id = "sma-btc"              # unique; the strategy_id in the ledger
    kind = "sma_cross"          # a built-in kind, or your own: "my_pkg.my_module:MyStrategy"
    symbols = ["BTCUSDT"]
    bar_interval = "5s"         # bar strategies: bars of this interval (built from quotes)
    decision_window = "1s"      # quote strategies: decisions in one window share their keys
    account = "main"            # optional: the account its orders go to (default: the engine's)
    on_start = "keep"           # or "cancel": its orders resting from a previous session are
                                # cancelled at start, after reconciliation, before it trades
    on_disconnect = "keep"      # or "cancel": after a connection loss long enough to mark the
                                # account disconnected, its resting orders are cancelled when
                                # the connection returns, after reconciliation, before it trades
    assumed_fee_bps = 10        # optional: the costs the strategy was designed (backtested) with,
    assumed_slippage_bps = 2    # shown next to the realized ones (tradectl_assumed_*_bps)
    [strategy.params]           # strategy-specific; numbers may be written bare or as strings
    fast = 3
    qty = "0.001"
    [strategy.limits]           # all optional
    max_position = "0.01"
    max_order_qty = "0.005"
    max_order_notional = "500"
    max_quote_age = "5s"
    max_orders_per_minute = 30  # also: max_position_notional, max_input_age, price_band_bps,
                                # min_spread_bps, max_spread_bps, fat_finger_multiple,
                                # typical_order_qty, max_volume_fraction, volume_window,
                                # max_depth_fraction, resize = ["max_order_qty", ...]
    categories = {"PRES-YES" = "elections"}  # optional: merged with [instruments.categories]

    [instruments.categories]    # optional: symbol -> category for the category limits
    BTCUSDT = "l1"

    [account.limits]            # optional: the whole account, every strategy together
    max_account_exposure = "5000"   # gross notional over every symbol, in the quote asset
    max_daily_loss = "200"          # change of the P&L since the day-start mark: crossing halts
    max_drawdown = "300"            # from the stored peak of the cumulative P&L: crossing halts
    day_boundary = "00:00:00"       # where the trading day starts, in day_timezone ("UTC")
    daily_loss_resume = "manual"    # or "next_day": the daily-loss halt lifts at the boundary
    max_balance_age = "2m"          # plus every per-strategy field above, as a default
    max_symbol_position = {BTCUSDT = "0.5"}     # every strategy together, per symbol;
    max_symbol_notional = {BTCUSDT = "20000"}   # also max_category_gross / max_category_net
    max_position_equity_pct = "20"  # a symbol's notional vs cash in equity_asset + positions
    equity_asset = "USDT"

    [breakers]                  # optional: the venue circuit breakers (default TRADECTL_BREAKER_*)
    failure_threshold = 5       # also recovery_timeout = "30s", success_threshold = 2, and
    [breakers.orders]           # per endpoint class (orders, reads, streams), field by field
    failure_threshold = 3
    [connection]                # optional: a stream down this long disconnects the account
    disconnect_after = "30s"    # (default TRADECTL_DISCONNECT_AFTER_S); see protection_config

Per-strategy limits override the account's field by field.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from engine.domain.risk import SIZE_CHECKS, Check, Limits
from engine.domain.risk.loss_marks import LossHaltResume, TradingDay
from engine.domain.stage import Staging
from engine.domain.types import StrategyId, Symbol
from engine.exceptions import ConfigError
from engine.marketdata.bars import interval_name, parse_interval
from engine.protection_config import BreakersTable, ConnectionTable, ProtectionConfig
from engine.strategy_host import DEFAULT_DECISION_WINDOW, HostedStrategy
from strategies.base import DecisionMode, ParamError, Strategy, StrategyLimits
from strategies.registry import UnknownKind, resolve


def _to_text(value: Any) -> str:
    """Params reach strategies as text; a TOML float's repr is the literal the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value) if isinstance(value, float) else str(value)
    raise ValueError(f"must be a string, number or boolean, got {type(value).__name__}")


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a decimal number, got {value!r}")
    try:
        result = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise ValueError(f"must be a decimal number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"must be a finite decimal number, got {value!r}")
    return result


def _to_decimal(value: Any) -> Decimal:
    result = _parse_decimal(value)
    if result <= 0:
        raise ValueError(f"must be a positive decimal number, got {value!r}")
    return result


def _to_bps(value: Any) -> Decimal:
    result = _parse_decimal(value)
    if result < 0:
        raise ValueError(f"must be zero or more basis points, got {value!r}")
    return result


def _to_interval(value: Any) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like '5s', '1m', '1h', '1d', got {value!r}")
    return parse_interval(value)


PositiveDecimal = Annotated[Decimal, BeforeValidator(_to_decimal)]
#: basis points of an assumed cost: zero or more
Bps = Annotated[Decimal, BeforeValidator(_to_bps)]
Interval = Annotated[timedelta, BeforeValidator(_to_interval)]
ParamText = Annotated[str, BeforeValidator(_to_text)]


class _CommonLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_position: PositiveDecimal | None = None
    max_order_qty: PositiveDecimal | None = None
    max_order_notional: PositiveDecimal | None = None
    max_position_notional: PositiveDecimal | None = None
    max_orders_per_minute: int | None = Field(default=None, ge=1)
    max_input_age: Interval | None = None
    price_band_bps: PositiveDecimal | None = None
    min_spread_bps: PositiveDecimal | None = None
    max_spread_bps: PositiveDecimal | None = None
    fat_finger_multiple: PositiveDecimal | None = None
    typical_order_qty: PositiveDecimal | None = None
    max_volume_fraction: PositiveDecimal | None = None
    volume_window: Interval | None = None
    max_depth_fraction: PositiveDecimal | None = None
    resize: list[str] = Field(default_factory=list)

    @field_validator("resize")
    @classmethod
    def _size_checks(cls, names: list[str]) -> list[str]:
        allowed = sorted(c.value for c in SIZE_CHECKS)
        for name in names:
            if name not in allowed:
                raise ValueError(f"{name!r} cannot resize; size checks are {allowed}")
        return names


class _Limits(_CommonLimits):
    max_quote_age: Interval = timedelta(seconds=5)


class _AccountLimits(_CommonLimits):
    max_quote_age: Interval | None = None
    max_account_exposure: PositiveDecimal | None = None
    max_daily_loss: PositiveDecimal | None = None
    max_drawdown: PositiveDecimal | None = None
    max_balance_age: Interval | None = None
    #: where the trading day starts: a time of day in ``day_timezone``
    day_boundary: time = time(0)
    day_timezone: str = "UTC"
    daily_loss_resume: LossHaltResume = LossHaltResume.MANUAL
    max_symbol_position: dict[str, PositiveDecimal] = Field(default_factory=dict)
    max_symbol_notional: dict[str, PositiveDecimal] = Field(default_factory=dict)
    max_position_equity_pct: PositiveDecimal | None = None
    equity_asset: str | None = None
    max_category_gross: dict[str, PositiveDecimal] = Field(default_factory=dict)
    max_category_net: dict[str, PositiveDecimal] = Field(default_factory=dict)

    @field_validator("day_timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (e.g. 'UTC', 'America/New_York')"
            ) from None
        return name


class _Instruments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: symbol -> category, for the per-category limits
    categories: dict[str, str] = Field(default_factory=dict)


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: _AccountLimits = Field(default_factory=_AccountLimits)


class StartPolicy(StrEnum):
    """What a start does with the strategy's orders still resting from a previous session."""

    KEEP = "keep"  #: leave them working (the strategy sees them as its open orders)
    CANCEL = "cancel"  #: cancel them after reconciliation, before the strategy decides


class DisconnectPolicy(StrEnum):
    """What the return of a lost venue connection (one that made the account ``disconnected``)
    does with the strategy's resting orders."""

    KEEP = "keep"  #: leave them working
    CANCEL = "cancel"  #: cancel them after the reconnect's reconciliation, before it decides


class _Strategy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: str
    symbols: list[str] = Field(min_length=1)
    account: str | None = None
    bar_interval: Interval | None = None
    decision_window: Interval = DEFAULT_DECISION_WINDOW
    on_start: StartPolicy = StartPolicy.KEEP
    on_disconnect: DisconnectPolicy = DisconnectPolicy.KEEP
    params: dict[str, ParamText] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)
    assumed_fee_bps: Bps | None = None
    assumed_slippage_bps: Bps | None = None
    #: symbol -> category, merged with ``[instruments.categories]``
    categories: dict[str, str] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        try:
            resolve(kind)
        except UnknownKind as exc:
            raise ValueError(str(exc)) from None
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
    account: _Account = Field(default_factory=_Account)
    instruments: _Instruments = Field(default_factory=_Instruments)
    breakers: BreakersTable = Field(default_factory=BreakersTable)
    connection: ConnectionTable = Field(default_factory=ConnectionTable)
    #: the fill model of `tradectl backtest --config` (engine/backtest/plan.py); the engine
    #: ignores it, so one file serves the backtest and the run
    backtest: dict[str, Any] = Field(default_factory=dict)


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
    on_start: StartPolicy = StartPolicy.KEEP
    on_disconnect: DisconnectPolicy = DisconnectPolicy.KEEP
    source: Path = field(default=Path("<memory>"))
    #: the costs the strategy assumes (as backtested), reported next to the realized ones
    assumed_fee_bps: Decimal | None = None
    assumed_slippage_bps: Decimal | None = None
    #: a hash of the whole ``[[strategy]]`` entry, recorded with each decision
    config_hash: str | None = None

    @property
    def bar_interval_name(self) -> str | None:
        return None if self.bar_interval is None else interval_name(self.bar_interval)

    def hosted(self, staging: Staging | None = None) -> HostedStrategy:
        """A fresh strategy instance with its config, ready for :class:`StrategyHost.add`;
        ``staging`` scales its orders (engine/domain/stage.py)."""
        kind = resolve(self.kind)
        strategy = kind.create(self.strategy_id, self.symbols, self.params)
        return HostedStrategy(
            strategy=strategy,
            params=self.params,
            limits=self.limits,
            decision_window=self.decision_window,
            bar_interval=self.bar_interval_name,
            version=kind.version,
            config_hash=self.config_hash,
            staging=staging,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingConfig:
    """The whole file: the strategies and the account-wide risk limits."""

    strategies: tuple[StrategySpec, ...]
    account_limits: Limits = field(default_factory=Limits)
    #: ``[breakers]`` and ``[connection]``, resolved against the settings at start
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)


def load_strategy_config(path: Path) -> tuple[StrategySpec, ...]:
    """Read and validate the whole file; raise :class:`ConfigError` at the first problem."""
    return load_trading_config(path).strategies


def load_trading_config(path: Path) -> TradingConfig:
    """Like :func:`load_strategy_config`, with the ``[account.limits]`` table too."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read strategy config: {exc.strerror}") from None
    except UnicodeDecodeError:
        # a binary file or another encoding: its bytes would say nothing useful in the message
        raise ConfigError(
            f"{path}: not UTF-8 text; TRADECTL_STRATEGIES_FILE must be a TOML strategy config"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_trading_config(raw, source=path)


def parse_trading_config(raw: Mapping[str, Any], *, source: Path) -> TradingConfig:
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, source)) from None
    a = parsed.account.limits
    try:
        account_limits = Limits(
            max_order_qty=a.max_order_qty,
            max_order_notional=a.max_order_notional,
            max_position_qty=a.max_position,
            max_position_notional=a.max_position_notional,
            max_account_exposure=a.max_account_exposure,
            max_daily_loss=a.max_daily_loss,
            max_drawdown=a.max_drawdown,
            max_orders_per_minute=a.max_orders_per_minute,
            max_price_age=a.max_quote_age,
            max_balance_age=a.max_balance_age,
            max_input_age=a.max_input_age,
            price_band_bps=a.price_band_bps,
            min_spread_bps=a.min_spread_bps,
            max_spread_bps=a.max_spread_bps,
            fat_finger_multiple=a.fat_finger_multiple,
            max_volume_fraction=a.max_volume_fraction,
            volume_window=a.volume_window or Limits().volume_window,
            max_depth_fraction=a.max_depth_fraction,
            trading_day=TradingDay(boundary=a.day_boundary, zone=_zone(a.day_timezone)),
            daily_loss_resume=a.daily_loss_resume,
            max_symbol_position=MappingProxyType(
                {Symbol(k): v for k, v in a.max_symbol_position.items()}
            ),
            max_symbol_notional=MappingProxyType(
                {Symbol(k): v for k, v in a.max_symbol_notional.items()}
            ),
            max_position_equity_pct=a.max_position_equity_pct,
            equity_asset=a.equity_asset,
            categories=_categories(parsed, source),
            max_category_gross=MappingProxyType(dict(a.max_category_gross)),
            max_category_net=MappingProxyType(dict(a.max_category_net)),
            resizable=frozenset(Check(c) for c in a.resize),
        )
    except ValueError as exc:
        raise ConfigError(f"{source}: account.limits: {exc}") from None
    _check_portfolio_limits(account_limits, source)
    return TradingConfig(
        strategies=_strategies(parsed, source),
        account_limits=account_limits,
        protection=ProtectionConfig(breakers=parsed.breakers, connection=parsed.connection),
    )


def _zone(name: str) -> tzinfo:
    # UTC as the standard library's own object: the default compares equal to it
    return UTC if name == "UTC" else ZoneInfo(name)


def _categories(parsed: _File, source: Path) -> Mapping[Symbol, str]:
    """``[instruments.categories]`` and every strategy's ``categories``, as one map: a symbol
    in two categories is an error (its exposure would count against one limit or the other
    depending on who asked)."""
    merged: dict[Symbol, str] = {}
    named = [("instruments.categories", parsed.instruments.categories)] + [
        (f"strategy {e.id!r}: field 'categories'", e.categories) for e in parsed.strategy
    ]
    for where, categories in named:
        for symbol, category in categories.items():
            if not category.strip():
                raise ConfigError(f"{source}: {where}: symbol {symbol!r} has an empty category")
            known = merged.setdefault(Symbol(symbol), category)
            if known != category:
                raise ConfigError(
                    f"{source}: {where}: symbol {symbol!r} is in category {category!r} here "
                    f"and {known!r} elsewhere"
                )
    return MappingProxyType(merged)


def _check_portfolio_limits(limits: Limits, source: Path) -> None:
    known = set(limits.categories.values())
    for name, by_category in (
        ("max_category_gross", limits.max_category_gross),
        ("max_category_net", limits.max_category_net),
    ):
        for category in by_category:
            if category not in known:
                raise ConfigError(
                    f"{source}: field 'account.limits.{name}': no symbol is in category "
                    f"{category!r} (categories: {sorted(known)}); set them in "
                    "[instruments.categories] or a strategy's categories"
                )
    if limits.max_position_equity_pct is not None and limits.equity_asset is None:
        raise ConfigError(
            f"{source}: field 'account.limits.equity_asset': required with "
            "max_position_equity_pct (the asset the account's cash is counted in, e.g. 'USDT')"
        )


def parse_strategy_config(raw: Mapping[str, Any], *, source: Path) -> tuple[StrategySpec, ...]:
    return parse_trading_config(raw, source=source).strategies


def _strategies(parsed: _File, source: Path) -> tuple[StrategySpec, ...]:
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
                max_position_notional=entry.limits.max_position_notional,
                max_orders_per_minute=entry.limits.max_orders_per_minute,
                max_input_age=entry.limits.max_input_age,
                price_band_bps=entry.limits.price_band_bps,
                min_spread_bps=entry.limits.min_spread_bps,
                max_spread_bps=entry.limits.max_spread_bps,
                fat_finger_multiple=entry.limits.fat_finger_multiple,
                typical_order_qty=entry.limits.typical_order_qty,
                max_volume_fraction=entry.limits.max_volume_fraction,
                volume_window=entry.limits.volume_window,
                max_depth_fraction=entry.limits.max_depth_fraction,
                resize=frozenset(entry.limits.resize),
            ),
            decision_window=entry.decision_window,
            bar_interval=entry.bar_interval,
            account=entry.account,
            on_start=entry.on_start,
            on_disconnect=entry.on_disconnect,
            source=source,
            assumed_fee_bps=entry.assumed_fee_bps,
            assumed_slippage_bps=entry.assumed_slippage_bps,
            config_hash=config_hash(entry.model_dump(mode="json")),
        )
        try:
            hosted = spec.hosted()
        except ParamError as exc:
            name = "symbols" if exc.field == "symbols" else f"params.{exc.field}"
            raise ConfigError(f"{where}: field {name!r}: {exc.detail}") from None
        except Exception as exc:
            # a user's strategy is code we do not know: whatever its constructor raises is
            # reported as a config problem on one line, not a traceback
            raise ConfigError(
                f"{where}: kind {entry.kind!r} could not be built: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(hosted.strategy, Strategy):
            raise ConfigError(
                f"{where}: kind {entry.kind!r} built {type(hosted.strategy).__name__}, which lacks "
                "the strategy contract (strategy_id, symbols, mode, bar_history, decide)"
            )
        if hosted.strategy.mode is DecisionMode.BAR and spec.bar_interval is None:
            raise ConfigError(
                f"{where}: field 'bar_interval': required for {entry.kind!r}, which decides on "
                'closed bars (e.g. bar_interval = "1m")'
            )
        specs.append(spec)
    return tuple(specs)


def config_hash(entry: Mapping[str, Any]) -> str:
    """A short stable hash of one strategy's validated config (key order does not matter)."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


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
