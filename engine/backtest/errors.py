"""The errors a backtest reports to its caller (the CLI prints them and exits 2)."""

from __future__ import annotations

from engine.exceptions import TradectlError


class BacktestDataError(TradectlError):
    """The OHLCV file cannot be used; the message names the file, line and column."""


class BacktestError(TradectlError):
    """The backtest could not run (bad settings, unknown strategy, a strategy that raised)."""
