"""The fill model's settings and the bar checks: interval from the data, gaps reported, tick and
lot step inferred from the data's precision, fills stamped when they would happen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest import BacktestError, BacktestSettings, load_bars, run_backtest
from engine.backtest.settings import FillAt, parse_overrides
from engine.domain.types import Symbol

FIXTURE = Path(__file__).resolve().parents[1] / "resources" / "ohlcv" / "btcusdt_1d.csv"
BTC = Symbol("BTCUSDT")
SMA = {"fast": "5", "slow": "20", "qty": "2"}
IDEAL = BacktestSettings(
    spread_bps=Decimal(0), latency_ms=Decimal(0), maker_fee=Decimal(0), taker_fee=Decimal(0)
)


def test_interval_is_the_median_step_and_longer_steps_are_gaps(tmp_path: Path) -> None:
    # starts on a Friday: the first step is a weekend, the interval is still one day
    days = [datetime(2024, 1, 5), datetime(2024, 1, 8), datetime(2024, 1, 9), datetime(2024, 1, 10)]
    rows = "\n".join(f"{d.date()},1.0898,1.0901,1.0890,1.0899,12" for d in days)
    path = tmp_path / "eur.csv"
    path.write_text(",Open,High,Low,Close,Volume\n" + rows + "\n")  # pandas' unnamed index
    series = load_bars(path, Symbol("EURUSD"))
    assert series.interval == timedelta(days=1)
    assert series.gaps == 1
    assert series.gap_samples == ((datetime(2024, 1, 6, tzinfo=UTC), timedelta(days=2)),)
    assert [b.close_time for b in series.bars][:2] == [
        datetime(2024, 1, 6, tzinfo=UTC),
        datetime(2024, 1, 9, tzinfo=UTC),
    ]
    assert series.tick_size == Decimal("0.0001")
    assert series.lot_step == Decimal(1)


def test_an_unknown_symbol_trades_on_the_datas_tick_not_a_fixed_cent(tmp_path: Path) -> None:
    path = tmp_path / "eur.csv"
    lines = ["Date,Open,High,Low,Close,Volume"]
    price = Decimal("1.08980")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(60):
        close = price + Decimal("0.00037") * (1 if (i // 7) % 2 else -1)
        hi, lo = max(price, close) + Decimal("0.0001"), min(price, close) - Decimal("0.0001")
        lines.append(f"{(start + timedelta(hours=i)).isoformat()},{price},{hi},{lo},{close},100")
        price = close
    path.write_text("\n".join(lines) + "\n")
    settings = BacktestSettings(
        symbol=Symbol("EURUSD"), spread_bps=Decimal(0), latency_ms=Decimal(0)
    )
    report = run_backtest(path, "sma_cross", {"fast": "2", "slow": "3", "qty": "1000"}, 0,
                          settings=settings)  # fmt: skip
    assert report.model["tick_size"] == "0.00001"
    assert report.fills
    closes = {b.close for b in load_bars(path, Symbol("EURUSD")).bars}
    assert all(f.price in closes for f in report.fills)


def test_next_open_fills_at_the_next_bars_open_stamped_then() -> None:
    settings = BacktestSettings(
        fill=FillAt.OPEN, spread_bps=Decimal(0), latency_ms=Decimal(0),
        maker_fee=Decimal(0), taker_fee=Decimal(0),
    )  # fmt: skip
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), 0, settings=settings)
    opens = {b.open_time: b.open for b in load_bars(FIXTURE, BTC).bars}
    assert report.fills
    assert all(f.price == opens[f.venue_ts] for f in report.fills)


def test_latency_stamps_fills_after_the_close() -> None:
    settings = BacktestSettings(latency_ms=Decimal(200))
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), 3, settings=settings)
    closes = {b.close_time for b in load_bars(FIXTURE, BTC).bars}
    assert report.fills
    assert all(f.venue_ts not in closes for f in report.fills)
    assert all(f.venue_ts.microsecond or f.venue_ts.second for f in report.fills)


def test_report_counts_round_trips_as_trades_with_the_figures() -> None:
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), 0, settings=IDEAL)
    perf = report.performance
    assert perf.trades == len(report.trades) > 3
    assert len(report.fills) == 2 * len(report.trades) + (1 if report.open_trade else 0)
    assert (
        sum(t.pnl for t in report.trades) + (report.open_trade.pnl if report.open_trade else 0)
        == report.pnl
    )
    assert perf.win_rate_pct is not None
    assert 0 <= perf.win_rate_pct <= 100
    assert perf.best_trade_pct is not None
    assert perf.worst_trade_pct is not None
    assert perf.best_trade_pct >= perf.worst_trade_pct
    assert 0 < perf.exposure_pct < 100
    assert perf.max_drawdown_pct == pytest.approx(float(report.max_drawdown_pct))
    assert perf.return_pct == pytest.approx(float(report.pnl / report.start_equity * 100))
    assert len(report.equity) == report.bars


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(BacktestError, match="participation must be in"):
        BacktestSettings(participation=Decimal(2)).check()
    with pytest.raises(BacktestError, match="tick_size must be > 0"):
        BacktestSettings(tick_size=Decimal(0)).check()
    with pytest.raises(BacktestError, match="fill: bad value 'noon'"):
        parse_overrides({"fill": "noon"}, "--fill")
    with pytest.raises(BacktestError, match="unknown backtest setting 'slippage'"):
        parse_overrides({"slippage": "1"}, "strategies.toml [backtest]")
    assert parse_overrides({"participation": "off", "fees": "0.1%"}, "x") == {
        "participation": None,
        "maker_fee": Decimal("0.001"),
        "taker_fee": Decimal("0.001"),
    }


def test_fills_are_folded_once_not_copied_every_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    # the cost per bar must not grow with the fills: a fill is reported a fixed number of times
    # (the submit's answer, the user stream, the fold, the report), however many bars follow;
    # copying the log every bar made it bars x fills
    from engine.venues.paper.venue import PaperVenue

    calls = 0
    original = PaperVenue._fill_report

    def counting(self: PaperVenue, fill: object) -> object:
        nonlocal calls
        calls += 1
        return original(self, fill)  # type: ignore[arg-type]

    monkeypatch.setattr(PaperVenue, "_fill_report", counting)
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), 0, settings=IDEAL)
    assert len(report.fills) > 10
    assert calls <= 4 * len(report.fills)
