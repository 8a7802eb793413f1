"""What one ``tradectl backtest`` runs: one strategy over one file, one strategy over one file
per symbol (``--data BTCUSDT=btc.csv --data ETHUSDT=eth.csv``), or the ``[[strategy]]`` entries
of a strategies TOML (``--config``), with their params and limits, and the fill model of its
``[backtest]`` table.

Each (strategy, symbol) pair is its own replay with its own starting capital; the totals add
them up. A strategy that decides across several symbols at once cannot be replayed yet: give
it one symbol per ``[[strategy]]``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from engine.backtest.errors import BacktestError
from engine.backtest.settings import BacktestSettings, parse_overrides
from engine.domain.types import Symbol
from engine.exceptions import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One replay: a strategy kind with its params, on one symbol's file."""

    label: str
    kind: str
    params: Mapping[str, str]
    data: Path
    settings: BacktestSettings


def parse_data(items: Sequence[str], symbol: str) -> dict[Symbol, Path]:
    """``--data FILE`` (the ``--symbol``'s file) or ``--data SYMBOL=FILE``, repeatable."""
    files: dict[Symbol, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name and not Path(item).exists():
            key = Symbol(name.strip())
        else:
            key, path = Symbol(symbol), item
        if key in files:
            raise BacktestError(
                f"--data: two files for {key}; give one per symbol as --data SYMBOL=FILE"
            )
        files[key] = Path(path)
    return files


def plan_runs(
    *,
    files: Mapping[Symbol, Path],
    kind: str | None,
    params: Mapping[str, str],
    config: Path | None,
    flags: Mapping[str, object],
    base: BacktestSettings | None = None,
) -> list[Run]:
    """The replays to run: ``kind`` on every file, or every ``[[strategy]]`` of ``config``
    (``kind``, when given with it, keeps only the entries of that id or kind). Settings are
    each symbol's defaults, then the config's ``[backtest]`` table, then the flags."""
    table: Mapping[str, object] = {}
    runs: list[Run] = []
    if config is None:
        if kind is None:
            raise BacktestError("give --strategy KIND, or --config FILE with [[strategy]] entries")
        for symbol, path in files.items():
            settings = _settings(symbol, table, flags, base)
            runs.append(Run(label=kind, kind=kind, params=params, data=path, settings=settings))
        return runs

    from engine.strategy_config import parse_trading_config

    raw = _read_toml(config)
    section = raw.pop("backtest", {})
    if not isinstance(section, dict):
        raise BacktestError(f"{config}: [backtest] must be a table")
    table = section
    try:
        specs = parse_trading_config(raw, source=config).strategies
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None
    if kind is not None:
        specs = tuple(s for s in specs if kind in (s.strategy_id, s.kind))
        if not specs:
            raise BacktestError(f"{config}: no [[strategy]] with id or kind {kind!r}")
    for spec in specs:
        if len(spec.symbols) != 1:
            raise BacktestError(
                f"{config}: strategy {spec.strategy_id!r} trades {len(spec.symbols)} symbols "
                "together; a backtest replays one symbol per [[strategy]]"
            )
        (symbol,) = spec.symbols
        found = files.get(symbol)
        if found is None:
            raise BacktestError(
                f"{config}: strategy {spec.strategy_id!r} trades {symbol}: give its bars as "
                f"--data {symbol}=FILE"
            )
        settings = dataclasses.replace(
            _settings(symbol, table, flags, base, where=f"{config} [backtest]"),
            limits=spec.limits,
        )
        merged = MappingProxyType({**spec.params, **params})
        runs.append(
            Run(
                label=spec.strategy_id, kind=spec.kind, params=merged, data=found, settings=settings
            )
        )
    return runs


def _settings(
    symbol: Symbol,
    table: Mapping[str, object],
    flags: Mapping[str, object],
    base: BacktestSettings | None,
    *,
    where: str = "[backtest]",
) -> BacktestSettings:
    settings = (
        dataclasses.replace(base, symbol=symbol) if base else BacktestSettings.for_symbol(symbol)
    )
    for source, values in ((where, table), ("backtest flags", flags)):
        overrides = parse_overrides(values, source)
        settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    settings.check()
    return settings


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BacktestError(f"--config {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BacktestError(f"--config {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BacktestError(f"--config {path}: not valid TOML: {exc}") from None
