"""With the ideal fill model a backtest gives the round trips and P&L backtesting.py gives with
``trade_on_close=True``, to the cent, on the GOOG daily and EURUSD hourly files it ships (read
from the installed package: skipped only when backtesting.py is absent, ``pip install
.[compare]``)."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.backtest import BacktestSettings, load_bars, run_backtest
from engine.backtest.settings import FillAt
from engine.domain.types import Symbol

backtesting = pytest.importorskip("backtesting")
pd = pytest.importorskip("pandas")
CENT = Decimal("0.01")


def _reference(csv: Path, size: int, cash: int) -> Any:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def sma(values: Any, n: int) -> Any:
        return pd.Series(values).rolling(n).mean()

    class LongFlat(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy(size=size)
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = pd.read_csv(csv, index_col=0, parse_dates=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": we compare those too
        return Backtest(frame, LongFlat, cash=cash, commission=0, trade_on_close=True).run()


@pytest.mark.parametrize(
    ("name", "size", "cash"), [("GOOG", 100, 1_000_000), ("EURUSD", 10_000, 100_000)]
)
def test_ideal_fills_give_backtesting_py_trade_on_close_results(
    name: str, size: int, cash: int
) -> None:
    csv = Path(backtesting.__file__).parent / "test" / f"{name}.csv"
    stats = _reference(csv, size, cash)
    settings = BacktestSettings(
        symbol=Symbol(name),
        capital=Decimal(cash),
        fill=FillAt.CLOSE,
        maker_fee=Decimal(0),
        taker_fee=Decimal(0),
        spread_bps=Decimal(0),
        latency_ms=Decimal(0),
        participation=None,
    )
    params = {"fast": "10", "slow": "20", "qty": str(size)}
    report = run_backtest(csv, "sma_cross", params, seed=0, settings=settings)

    bars = load_bars(csv, Symbol(name)).bars
    close_of = {b.open_time.replace(tzinfo=None): b.close_time for b in bars}
    closed = stats._trades  # the closed ones (backtesting.py leaves the last one open)
    assert len(report.trades) == len(closed) > 20
    for ours, ref in zip(report.trades, closed.itertuples(), strict=True):
        # filled at the signal bar's close: stamped at that close, the bar they label it with
        assert ours.entry_time == close_of[ref.EntryTime.to_pydatetime()]
        assert ours.exit_time == close_of[ref.ExitTime.to_pydatetime()]
        assert ours.quantity == ref.Size
        assert ours.entry_price == Decimal(str(ref.EntryPrice))
        assert ours.exit_price == Decimal(str(ref.ExitPrice))
        assert ours.pnl.quantize(CENT) == Decimal(str(ref.PnL)).quantize(CENT)
    # the trade still open at the end, and the final equity
    still_open = stats._strategy.position.size
    assert (report.open_trade.quantity if report.open_trade else 0) == still_open
    final = Decimal(str(stats["Equity Final [$]"])).quantize(CENT)
    assert report.end_equity.quantize(CENT) == final
    assert report.fees == 0
    assert report.avg_slippage_bps == 0
