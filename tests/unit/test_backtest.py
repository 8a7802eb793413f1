from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from engine.backtest import (
    BacktestDataError,
    BacktestError,
    BacktestReport,
    BacktestSettings,
    read_ohlcv,
    render_report,
    run_backtest,
)
from engine.domain.types import Asset, Side, Symbol

FIXTURE = Path(__file__).resolve().parents[1] / "resources" / "ohlcv" / "btcusdt_1d.csv"
PRES_FIXTURE = FIXTURE.with_name("pres_yes_1d.csv")
BTC = Symbol("BTCUSDT")
SMA = {"fast": "5", "slow": "20", "qty": "2"}

HEADER = "Date,Open,High,Low,Close,Volume\n"
GOOD_ROWS = "2024-01-01,100,110,90,105,1000\n2024-01-02,105,108,101,102,900\n"


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text(text)
    return path


# --- reading OHLCV ---------------------------------------------------------------------------


def test_reads_the_fixture_as_daily_bars() -> None:
    bars = read_ohlcv(FIXTURE, BTC)
    assert len(bars) == 500
    first = bars[0]
    assert first.interval == "1d"
    assert first.open_time == datetime(2023, 1, 1, tzinfo=UTC)
    assert first.close_time == datetime(2023, 1, 2, tzinfo=UTC)
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("16547.31"),
        Decimal("17130.19"),
        Decimal("16344.88"),
        Decimal("16821.97"),
    )
    assert all(b.closed and b.symbol == BTC for b in bars)


def test_reads_datetimes_in_any_header_case_ignoring_extra_columns(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "date,OPEN,high,low,close,volume,Adj Close\n"
        "2024-01-01T10:00:00Z,1,2,0.5,1.5,10,9\n"
        "2024-01-01 11:00:00,1.5,2,1,1.2,10,9\n",
    )
    bars = read_ohlcv(path, BTC)
    assert [b.open_time for b in bars] == [
        datetime(2024, 1, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 11, tzinfo=UTC),
    ]
    assert {b.interval for b in bars} == {"1h"}
    assert bars[0].close_time == bars[1].open_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER + GOOD_ROWS + "2024-01-03,102,abc,100,101,5\n", "line 4, column High: expected"),
        (HEADER + GOOD_ROWS + "2024-01-03,102,103,100,,5\n", "line 4, column Close: empty"),
        (HEADER + GOOD_ROWS + "2024-01-03,102,103,100,101,-5\n", "line 4, column Volume"),
        (HEADER + GOOD_ROWS + "2024-01-03,0,103,100,101,5\n", "line 4, column Open"),
        (HEADER + GOOD_ROWS + "03/01/2024,102,103,100,101,5\n", "line 4, column Date: expected"),
        (HEADER + GOOD_ROWS + "2024-01-02,102,103,100,101,5\n", "line 4, column Date: 2024-01-02"),
        (HEADER + GOOD_ROWS + "2024-01-03,102,101,100,101,5\n", "line 4, column High/Low"),
        ("Date,Open,High,Close,Volume\n" + GOOD_ROWS, "line 1: missing column(s) Low"),
        (HEADER + "2024-01-01,100,110,90,105,1000\n", "needs at least 2 bars"),
        ("", "empty file"),
    ],
)
def test_bad_rows_are_reported_with_line_and_column(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = csv_file(tmp_path, text)
    with pytest.raises(BacktestDataError) as info:
        read_ohlcv(path, BTC)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


# --- the replay -----------------------------------------------------------------------------


#: the chapter's market model: latency, a spread, and a share of each bar's volume shown
CHAPTER = BacktestSettings(participation=Decimal("0.0001"))


@pytest.fixture(scope="module")
def sma_report() -> BacktestReport:
    return run_backtest(FIXTURE, "sma_cross", dict(SMA), seed=7, settings=CHAPTER)


def test_pnl_equals_the_cash_flows_of_the_fills(sma_report: BacktestReport) -> None:
    r = sma_report
    cash = Decimal(0)
    base = Decimal(0)
    fees = Decimal(0)
    for f in r.fills:
        cash -= f.side.sign * f.quantity * f.price
        base += f.side.sign * f.quantity
        if f.fee_asset == Asset("BTC"):
            base -= f.fee
            fees += f.fee * f.price
        else:
            cash -= f.fee
            fees += f.fee
    assert r.final_position == base
    assert r.pnl == cash + base * r.last_price
    assert r.pnl == r.realized_pnl + r.unrealized_pnl
    assert r.fees == fees
    assert r.end_equity == r.start_equity + r.pnl


def test_report_counts_are_consistent(sma_report: BacktestReport) -> None:
    r = sma_report
    assert r.bars == 500
    assert r.decisions == 500  # one per closed bar, none skipped
    assert r.holds + r.orders + r.rejected == r.decisions
    assert r.filled_qty == sum(f.quantity for f in r.fills)
    assert r.fill_rate == r.filled_qty / r.requested_qty
    assert r.orders > 5
    assert r.partially_filled > 0  # the shown size is smaller than some orders
    assert Decimal(0) < r.fill_rate < 1
    assert Decimal(0) <= r.max_drawdown_pct < 100
    assert r.max_drawdown > 0
    assert r.avg_slippage_bps is not None
    assert r.avg_slippage_bps > 0  # paying half the spread on every taker fill
    assert {f.side for f in r.fills} == {Side.BUY, Side.SELL}


def test_same_seed_same_report_other_seed_other_fills(sma_report: BacktestReport) -> None:
    again = run_backtest(FIXTURE, "sma_cross", dict(SMA), seed=7, settings=CHAPTER)
    assert again == sma_report
    other = run_backtest(FIXTURE, "sma_cross", dict(SMA), seed=8, settings=CHAPTER)
    assert [f.price for f in other.fills] != [f.price for f in sma_report.fills]


def test_no_latency_no_spread_means_fills_at_the_decision_price() -> None:
    settings = BacktestSettings(spread_bps=Decimal(0), latency_ms=Decimal(0))
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), seed=1, settings=settings)
    assert report.partially_filled == 0
    assert report.avg_slippage_bps == 0
    closes = {b.close_time: b.close for b in read_ohlcv(FIXTURE, BTC)}
    # each fill at its signal bar's close, stamped with that close's time
    assert report.fills
    assert all(f.price == closes[f.venue_ts] for f in report.fills)


def test_participation_is_off_by_default_so_orders_fill_whole() -> None:
    report = run_backtest(FIXTURE, "sma_cross", dict(SMA), seed=1)
    assert report.orders > 5
    assert report.partially_filled == 0
    assert report.fill_rate == 1


def test_render_report_shows_the_figures(sma_report: BacktestReport) -> None:
    text = render_report(sma_report)
    for label in ("total P&L", "fees", "fill rate", "avg slippage", "max drawdown", "fills"):
        assert label in text
    assert f"{len(sma_report.fills)}" in text


def test_quote_strategy_replays_on_a_prediction_market(tmp_path: Path) -> None:
    rng = random.Random(3)
    price = 0.5
    lines = [HEADER.strip()]
    day = datetime(2024, 1, 1)
    for _ in range(120):
        close = min(0.95, max(0.05, price + rng.gauss(0, 0.04)))
        hi, lo = max(price, close) + 0.01, min(price, close) - 0.01
        lines.append(f"{day.date()},{price:.2f},{hi:.2f},{lo:.2f},{close:.2f},5000")
        price = float(f"{close:.2f}")
        day += timedelta(days=1)
    path = csv_file(tmp_path, "\n".join(lines) + "\n")
    settings = BacktestSettings(
        symbol=Symbol("PRES-YES"), capital=Decimal(1000), participation=Decimal("0.01"),
        fees_in_quote=True,
    )  # fmt: skip
    params = {"fair": "0.5", "edge": "0.05", "qty": "20", "max_inventory": "60"}
    report = run_backtest(path, "fair_value", params, seed=2, settings=settings)
    assert report.orders > 0
    assert report.fills
    assert all(f.fee_asset == Asset("USD") for f in report.fills)
    assert abs(report.final_position) <= 60
    assert report.final_position >= 0
    cash = sum((-f.side.sign * f.quantity * f.price - f.fee for f in report.fills), Decimal(0))
    assert report.pnl == cash + report.final_position * report.last_price
    assert not math.isnan(float(report.max_drawdown))


def test_unknown_strategy_and_bad_params_are_backtest_errors() -> None:
    with pytest.raises(BacktestError, match="unknown strategy kind 'nope'"):
        run_backtest(FIXTURE, "nope", {}, seed=1)
    with pytest.raises(BacktestError, match="slow: must be greater than fast"):
        run_backtest(FIXTURE, "sma_cross", {"fast": "5", "slow": "5", "qty": "1"}, seed=1)


def test_render_report_shows_a_flat_position_as_zero(sma_report: BacktestReport) -> None:
    flat = dataclasses.replace(
        sma_report,
        final_position=Decimal("0E-8"),
        filled_qty=Decimal("40.37450000"),
        last_price=Decimal("6.6E+4"),
    )
    text = render_report(flat)
    assert "(position 0 @ 66000)" in text
    assert "(40.3745 of " in text
    assert "E-" not in text
    assert "E+" not in text


def test_settings_for_a_prediction_market_charge_fees_in_the_quote_asset() -> None:
    assert BacktestSettings.for_symbol(Symbol("PRES-YES")).fees_in_quote
    assert not BacktestSettings.for_symbol(BTC).fees_in_quote


def test_fair_value_replays_the_prediction_market_fixture_with_default_settings() -> None:
    settings = BacktestSettings.for_symbol(Symbol("PRES-YES"))
    params = {"fair": "0.55", "edge": "0.03", "qty": "20", "max_inventory": "200"}
    report = run_backtest(PRES_FIXTURE, "fair_value", params, seed=7, settings=settings)
    assert report.bars == 180
    assert report.fills
    assert {f.side for f in report.fills} == {Side.BUY, Side.SELL}
    assert {f.fee_asset for f in report.fills} == {Asset("USD")}
    assert 0 <= report.final_position <= 200
