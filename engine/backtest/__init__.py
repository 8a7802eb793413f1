"""Replay OHLCV bars through a strategy and the paper venue, and report how it would have done.

The strategy code is the live code, run by the live :class:`~engine.strategy_host.StrategyHost`
(same snapshots, same decision keys, same isolation), and its orders go to the same
:class:`~engine.venues.paper.PaperVenue` that paper trading uses. Only the market is replayed.

The execution model, seeded by ``seed`` so that a run repeats exactly:

- Each bar is walked as quotes open → low/high (the nearer extreme first, by the bar's
  direction) → close, each ``spread_bps`` wide, so resting limit orders fill when the bar's
  range crosses them (as maker, at their price).
- At the bar's close the strategy decides (bar strategies on the closed bar, quote strategies on
  the closing quote). Its orders reach the venue after a latency drawn from an exponential
  distribution of mean ``latency_ms``; meanwhile the price moves by a Gaussian step scaled by the
  bar's range and the square root of the latency's share of the bar (a random walk's scaling).
  That *arrival quote* is what the orders meet.
- The size shown at each quote is ``participation × bar volume × U(0.25, 1)``: an order larger
  than that fills partially, and the rest expires (market / IOC) or rests (GTC).

Slippage is measured per fill against the mid price the decision was made on (the bar's close),
in basis points, positive when it cost us. P&L is folded from the fills with
:mod:`engine.domain.positions` (average cost, fees included) and marked at each bar's close for
the equity curve and its maximum drawdown.

Persisted (:func:`run_backtest_persisted`, ``tradectl backtest --persist``), the intents take the
live durable path instead of going straight to the venue: :class:`~engine.execution.Execution`
with the :class:`~engine.risk_gate.RiskGate`, the :class:`~engine.ledger.ledger.Ledger` under the
account's lease, and the venue's user stream applied by :class:`~engine.execution.FillPath`, all
on the simulated clock. Same market, same fills, same report; and the ledger can be queried with
the SQL used for live trading.

The modules: :mod:`~engine.backtest.data` reads the CSV, :mod:`~engine.backtest.settings` holds
the market model's parameters, :mod:`~engine.backtest.replay` runs the bars,
:mod:`~engine.backtest.in_memory` and :mod:`~engine.backtest.persisted` are the two execution
paths, :mod:`~engine.backtest.report` and :mod:`~engine.backtest.render` are the outcome and its
text, and :mod:`~engine.backtest.run` the entry points.
"""

from engine.backtest.data import BarSeries, load_bars, read_ohlcv
from engine.backtest.errors import BacktestDataError, BacktestError
from engine.backtest.execution_path import ORDER_ID_PREFIX
from engine.backtest.persisted import LedgerTarget
from engine.backtest.render import ledger_hint, render_report
from engine.backtest.replay import Replay
from engine.backtest.report import BacktestReport
from engine.backtest.run import default_account, run_backtest, run_backtest_persisted
from engine.backtest.settings import BacktestSettings

__all__ = [
    "ORDER_ID_PREFIX",
    "BacktestDataError",
    "BacktestError",
    "BacktestReport",
    "BacktestSettings",
    "BarSeries",
    "LedgerTarget",
    "Replay",
    "default_account",
    "ledger_hint",
    "load_bars",
    "read_ohlcv",
    "render_report",
    "run_backtest",
    "run_backtest_persisted",
]
